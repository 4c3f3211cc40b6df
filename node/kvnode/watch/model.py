"""A committed change and the position of a watcher in one partition's change stream.

Positions are pairs ``(index, seq)``: ``index`` is the Raft log index of the entry that made the
change (the same on every replica of the partition, and the record version a put gets), ``seq``
the change's place within that entry (a batch makes several). A position means "everything up
to and including this change was delivered"; ``seq == WHOLE`` means the whole entry was.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

WHOLE = (1 << 31) - 1
"""``seq`` of a position that covers every change of its entry."""
_POSITION = re.compile(r"[0-9]{1,19}(\.[0-9]{1,10})?")


class Kind(StrEnum):
    PUT = "put"
    DELETE = "delete"
    EXPIRE = "expire"


@dataclass(frozen=True, slots=True, order=True)
class Position:
    """Where a watcher is in one partition: after change ``seq`` of log entry ``index``."""

    index: int
    seq: int = WHOLE

    def to_text(self) -> str:
        """``"120"`` (whole entry 120) or ``"120.3"`` (up to change 3 of entry 120)."""
        return str(self.index) if self.seq == WHOLE else f"{self.index}.{self.seq}"

    @classmethod
    def from_text(cls, raw: str) -> Position:
        """Inverse of ``to_text``; ValueError on anything else."""
        if not _POSITION.fullmatch(raw):
            raise ValueError(f"not a position: {raw[:40]!r}")
        head, dot, tail = raw.partition(".")
        seq = int(tail) if dot else WHOLE
        if seq > WHOLE:
            raise ValueError(f"position seq out of range: {raw[:40]!r}")
        return cls(int(head), seq)


@dataclass(frozen=True, slots=True)
class Effect:
    """What applying one op of an entry did to one key, as the command processor reports it
    (``Change`` adds the partition, log position and time when a watcher reads it)."""

    kind: Kind
    key: str
    value: str | None = None
    prev_version: int = 0
    expires_at_ms: int | None = None

    @property
    def size(self) -> int:
        """Bytes this effect is charged in a history (key + value + fixed overhead)."""
        return 64 + len(self.key) + (0 if self.value is None else len(self.value))


@dataclass(frozen=True, slots=True)
class Change:
    """One committed change of one key, as every replica applied it.

    ``version``: the log index that made the change (a put's new record version; for a delete or
    an expiry the index that removed the record). ``prev_version``: the version of the record the
    change replaced or removed (0 if none). ``value`` is the stored string (as ``GET`` returns
    it), None for delete and expire. ``ts_ms``: the proposer's clock when the entry was proposed
    (the time every replica used for TTLs), from which delivery lag is measured.
    """

    partition: int
    index: int
    seq: int
    kind: Kind
    key: str
    value: str | None
    prev_version: int
    expires_at_ms: int | None
    ts_ms: int

    @property
    def version(self) -> int:
        return self.index

    @property
    def position(self) -> Position:
        return Position(self.index, self.seq)

    @property
    def size(self) -> int:
        """Bytes this change is charged in a history or a buffer (key + value + overhead)."""
        return 64 + len(self.key) + (0 if self.value is None else len(self.value))

    def to_dict(self, *, rev: Position | None = None) -> dict[str, Any]:
        """The JSON shape of a change event; ``rev`` is the position to resume after it."""
        return {
            "kind": self.kind.value,
            "key": self.key,
            "value": self.value,
            "version": self.index,
            "prev_version": self.prev_version,
            "expires_at_ms": self.expires_at_ms,
            "partition": self.partition,
            "rev": (rev or self.position).to_text(),
            "ts_ms": self.ts_ms,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Change:
        pos = Position.from_text(str(d["rev"]))
        return cls(
            partition=int(d["partition"]),
            index=int(d["version"]),
            seq=pos.seq if pos.index == int(d["version"]) else 0,
            kind=Kind(d["kind"]),
            key=str(d["key"]),
            value=None if d.get("value") is None else str(d["value"]),
            prev_version=int(d.get("prev_version") or 0),
            expires_at_ms=None if d.get("expires_at_ms") is None else int(d["expires_at_ms"]),
            ts_ms=int(d.get("ts_ms") or 0),
        )


@dataclass(frozen=True, slots=True)
class Event:
    """One item of a watch stream. ``kind``: ``change`` (``change`` and its resume position
    ``rev``), ``ready`` (first, with the start token), ``progress`` (positions moved without a
    matching change), ``cutoff`` (last: the server ended the stream, ``reason`` says why) or
    ``end`` (last: the requested duration passed). ``token`` resumes after this event (empty on
    change events: the client computes it from ``rev``)."""

    kind: str
    token: str
    change: Change | None = None
    rev: Position | None = None
    reason: str | None = None
    message: str | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.change is not None:
            return self.change.to_dict(rev=self.rev)
        body: dict[str, Any] = {"token": self.token}
        if self.reason is not None:
            body.update(reason=self.reason, message=self.message)
        return body
