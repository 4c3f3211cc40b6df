"""Values the client returns and accepts: entries, pages, batch operations and results."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from kvnode.core import errors

PUT_FIELDS = frozenset({"op", "key", "value", "ttl", "if_version", "if_value"})
DELETE_FIELDS = frozenset({"op", "key", "if_version", "if_value"})


@dataclass(frozen=True, slots=True)
class Entry:
    """A live key as read: value, version (for ``if_version``) and absolute expiry in ms."""

    key: str
    value: str
    version: int
    expires_at_ms: int | None = None

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Entry:
        exp = body.get("expires_at_ms")
        return cls(
            key=str(body["key"]),
            value=str(body["value"]),
            version=int(body["version"]),
            expires_at_ms=None if exp is None else int(exp),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "value": self.value,
            "version": self.version,
            "expires_at_ms": self.expires_at_ms,
        }


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a listing; pass ``next_cursor`` back to get the next (None on the last)."""

    items: tuple[Entry, ...]
    next_cursor: str | None

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(e.key for e in self.items)


@dataclass(frozen=True, slots=True)
class Deletion:
    """What ``DELETE /v1/kv/{key}`` answered: whether the key existed and the version removed
    (0 when there was none)."""

    key: str
    deleted: bool
    version: int

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Deletion:
        return cls(str(body["key"]), bool(body["deleted"]), int(body.get("version", 0)))

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "deleted": self.deleted, "version": self.version}


@dataclass(frozen=True, slots=True)
class BatchOp:
    """One write of a batch; build with ``BatchOp.put(...)`` / ``BatchOp.delete(...)``."""

    op: Literal["put", "delete"]
    key: str
    value: str | None = None
    ttl: float | None = None
    if_version: int | None = None
    if_value: str | None = None

    @classmethod
    def put(
        cls,
        key: str,
        value: str,
        *,
        ttl: float | None = None,
        if_version: int | None = None,
        if_value: str | None = None,
    ) -> BatchOp:
        return cls("put", key, value, ttl, if_version, if_value)

    @classmethod
    def delete(
        cls, key: str, *, if_version: int | None = None, if_value: str | None = None
    ) -> BatchOp:
        return cls("delete", key, None, None, if_version, if_value)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"op": self.op, "key": self.key}
        optional = {
            "value": self.value,
            "ttl": self.ttl,
            "if_version": self.if_version,
            "if_value": self.if_value,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        return body

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> BatchOp:
        """Parse one op of a ``POST /v1/batch`` body (the server validates it fully)."""
        kind = body.get("op")
        if kind not in ("put", "delete"):
            raise errors.InvalidArgument(f"op must be 'put' or 'delete', got {kind!r}", field="op")
        unknown = sorted(set(body) - (PUT_FIELDS if kind == "put" else DELETE_FIELDS))
        if unknown:
            raise errors.InvalidArgument(f"unknown field(s) {unknown} in a {kind} op")
        if "key" not in body:
            raise errors.InvalidArgument("op has no key", field="key")
        return cls(
            op=kind,
            key=body["key"],
            value=body.get("value"),
            ttl=body.get("ttl"),
            if_version=body.get("if_version"),
            if_value=body.get("if_value"),
        )


@dataclass(frozen=True, slots=True)
class BatchItem:
    """The outcome of one op, as the HTTP API reports it: ``index`` (its position in the
    request), ``key``, ``applied``, then ``version``/``existed`` or the ``error`` of its
    partition (whose own ``index`` names the op that made the share fail)."""

    index: int
    key: str
    applied: bool
    version: int | None = None
    existed: bool | None = None
    error: errors.KvError | None = None

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> BatchItem:
        index, key = int(body["index"]), str(body["key"])
        if body.get("applied", False):
            return cls(index, key, True, int(body["version"]), bool(body["existed"]))
        err = body.get("error")
        return cls(
            index, key, False, error=errors.error_from_dict(err if isinstance(err, dict) else {})
        )

    def to_json(self) -> dict[str, Any]:
        head: dict[str, Any] = {"index": self.index, "key": self.key, "applied": self.applied}
        if self.applied:
            return {**head, "version": self.version, "existed": self.existed}
        assert self.error is not None
        return {**head, "error": self.error.to_dict()}


@dataclass(frozen=True, slots=True)
class BatchResult:
    """Per-op outcomes in request order. Each partition's share applied all or nothing;
    ``applied`` is true only when every op did. ``error`` is the error the whole answer carried
    when no op applied (the HTTP API then answers that error's status); ``to_json`` gives back
    exactly the HTTP body."""

    applied: bool
    results: tuple[BatchItem, ...]
    error: errors.KvError | None = None

    def raise_for_error(self) -> None:
        """Raise the first op's error, if any (after inspecting what did apply)."""
        for item in self.results:
            if item.error is not None:
                raise item.error

    def to_json(self) -> dict[str, Any]:
        head = {} if self.error is None else self.error.to_dict()
        return {**head, "applied": self.applied, "results": [i.to_json() for i in self.results]}
