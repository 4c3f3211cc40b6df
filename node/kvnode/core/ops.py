"""Client operations as validated values, and the limits that bound them.

Validation happens once, when a request is turned into these values (``Limits.check_*``), before
anything is proposed to Raft: a batch is either wholly valid or rejected untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from kvnode.core import errors
from kvnode.core.model import Record


class Consistency(StrEnum):
    """Read consistency level.

    STRONG: linearizable — served after a Raft read barrier has been applied locally.
    EVENTUAL: served from the local replica's state, possibly stale.
    """

    STRONG = "strong"
    EVENTUAL = "eventual"

    @classmethod
    def parse(cls, raw: str | None) -> Consistency:
        if raw is None or raw == "":
            return cls.STRONG
        try:
            return cls(raw)
        except ValueError:
            raise errors.InvalidArgument(
                f"consistency must be 'strong' or 'eventual', got {raw!r}", field="consistency"
            ) from None


@dataclass(frozen=True, slots=True)
class Condition:
    """Optimistic-locking precondition. ``if_version=0`` means "only if the key is absent"."""

    if_version: int | None = None
    if_value: str | None = None

    @property
    def empty(self) -> bool:
        return self.if_version is None and self.if_value is None


@dataclass(frozen=True, slots=True)
class Put:
    key: str
    value: str
    ttl_ms: int | None = None
    cond: Condition = Condition()


@dataclass(frozen=True, slots=True)
class Delete:
    key: str
    cond: Condition = Condition()


Write = Put | Delete


@dataclass(frozen=True, slots=True)
class WriteResult:
    """Outcome of one applied write.

    For a put, ``version`` is the new version. For a delete, ``version`` is the version of the
    record that was removed (0 if there was none) and ``existed`` says whether there was one.
    """

    key: str
    version: int
    existed: bool


@dataclass(frozen=True, slots=True)
class Limits:
    """Size limits enforced on every request (defaults suit a single Raft entry comfortably)."""

    max_key_bytes: int = 1024
    max_value_bytes: int = 256 * 1024
    max_batch_ops: int = 256
    max_body_bytes: int = 4 * 1024 * 1024
    max_ttl_ms: int = 10 * 365 * 24 * 3600 * 1000
    max_list_limit: int = 1000

    def check_key(self, key: str) -> None:
        if not key:
            raise errors.InvalidArgument("key must not be empty", field="key")
        if "\x00" in key:
            raise errors.InvalidArgument("key must not contain NUL", field="key")
        size = len(key.encode("utf-8", errors="surrogatepass"))
        if size > self.max_key_bytes:
            raise errors.TooLarge(
                f"key is {size} bytes, limit is {self.max_key_bytes}",
                field="key",
                limit=self.max_key_bytes,
            )

    def check_value(self, value: str) -> None:
        size = len(value.encode("utf-8", errors="surrogatepass"))
        if size > self.max_value_bytes:
            raise errors.TooLarge(
                f"value is {size} bytes, limit is {self.max_value_bytes}",
                field="value",
                limit=self.max_value_bytes,
            )

    def check_ttl_ms(self, ttl_ms: int | None) -> None:
        if ttl_ms is None:
            return
        if ttl_ms <= 0 or ttl_ms > self.max_ttl_ms:
            raise errors.InvalidArgument(
                f"ttl must be > 0 and at most {self.max_ttl_ms // 1000} seconds", field="ttl"
            )

    def check_write(self, op: Write) -> None:
        self.check_key(op.key)
        if isinstance(op, Put):
            self.check_value(op.value)
            self.check_ttl_ms(op.ttl_ms)
        if op.cond.if_version is not None and op.cond.if_version < 0:
            raise errors.InvalidArgument("if_version must be >= 0", field="if_version")
        if op.cond.if_value is not None:
            self.check_value(op.cond.if_value)

    def check_batch(self, ops: list[Write]) -> None:
        if not ops:
            raise errors.InvalidArgument("batch must contain at least one operation", field="ops")
        if len(ops) > self.max_batch_ops:
            raise errors.TooLarge(
                f"batch has {len(ops)} operations, limit is {self.max_batch_ops}",
                field="ops",
                limit=self.max_batch_ops,
            )
        seen: set[str] = set()
        for op in ops:
            self.check_write(op)
            if op.key in seen:
                raise errors.InvalidArgument(
                    f"key {op.key!r} appears twice in the batch", field="ops"
                )
            seen.add(op.key)


@dataclass(frozen=True, slots=True)
class RequestContext:
    """Per-request routing facts taken from headers.

    ``epoch``: the caller's map epoch, if it sent one (a stale one is refused with StaleEpoch).
    ``forward``: whether this node may forward to the partition leader (smart clients say no, to
    learn about the leader instead). ``hops``: forwards so far, to stop loops.
    ``timeout_s``: the caller's deadline for the whole operation.
    """

    epoch: int | None = None
    forward: bool = True
    hops: int = 0
    timeout_s: float = 5.0


@dataclass(frozen=True, slots=True)
class KeyPage:
    """One page of a prefix listing, in key order; ``next_cursor`` is None on the last page."""

    items: tuple[tuple[str, Record], ...]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class OpOutcome:
    """Outcome of one operation of a batch: a result, or the error that stopped its partition."""

    result: WriteResult | None = None
    error: errors.KvError | None = None


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """Per-op outcomes of a batch, in request order. Each partition's ops applied all or none."""

    outcomes: tuple[OpOutcome, ...]

    @property
    def applied(self) -> bool:
        return all(o.error is None for o in self.outcomes)
