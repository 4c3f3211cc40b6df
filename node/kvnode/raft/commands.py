"""The commands that go into a partition's Raft log, and their byte encoding.

The encoding is part of the durable format (journals and snapshots outlive a release): a format
byte, then compact JSON. A new format gets a new byte and ``decode`` keeps reading old ones.
``decode`` is strict — any malformed input raises ValueError, never returns a half-valid
command — and the command constructors enforce the invariants the processor relies on
(distinct keys within a batch, non-negative times), so a bad entry cannot corrupt a replica.

Format 1 (JSON arrays, ``null`` for absent optional fields)::

    {"t": "w", "now": <ms>, "ops": [["p", key, value, ttl_ms, if_version, if_value],
                                    ["d", key, if_version, if_value], ...]}
    {"t": "e", "now": <ms>, "limit": <n>}
    {"t": "b"}
    {"t": "d"}
    {"t": "g", "reqs": [{"now": <ms>, "ops": [...]}, ...]}      (group commit)

A ``"w"`` entry is one client request; a ``"g"`` entry is several independent client requests
coalesced by group commit (``kvnode.raft.groupcommit``), each with the body of a ``"w"`` entry.
A lone request is still written as ``"w"``, so journals written before group commit existed, and
entries written at low load, decode and apply exactly as before.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from kvnode.core import ops as kvops

FORMAT_JSON_V1 = 0x01
MAX_INT = (1 << 63) - 1


@dataclass(frozen=True, slots=True)
class WriteCmd:
    """One put/delete or an atomic batch for ONE partition; ``now_ms`` is the proposer's clock,
    the only time every replica uses for TTLs and expiry checks of this entry."""

    ops: tuple[kvops.Put | kvops.Delete, ...]
    now_ms: int

    def __post_init__(self) -> None:
        _check_int("now_ms", self.now_ms)
        if not self.ops:
            raise ValueError("WriteCmd needs at least one op")
        keys = [op.key for op in self.ops]
        if len(set(keys)) != len(keys):
            raise ValueError("WriteCmd keys must be distinct")
        for op in self.ops:
            _check_op(op)


@dataclass(frozen=True, slots=True)
class ExpireCmd:
    """Delete up to ``limit`` records expired at ``now_ms`` (issued periodically by the leader, so
    TTL'd data leaves every replica identically)."""

    now_ms: int
    limit: int

    def __post_init__(self) -> None:
        _check_int("now_ms", self.now_ms)
        _check_int("limit", self.limit)


@dataclass(frozen=True, slots=True)
class BarrierCmd:
    """A no-op entry: once applied locally, every write committed before a read began is visible
    (the linearizable-read barrier)."""


@dataclass(frozen=True, slots=True)
class DigestCmd:
    """A no-op entry at which every replica digests its data in the background: replicas that
    applied the same log prefix must report the same digest (rebalance VERIFY)."""


@dataclass(frozen=True, slots=True)
class GroupCmd:
    """Several independent client requests in one log entry (group commit).

    Each request keeps its own ops, clock and outcome: a failed condition in one changes nothing
    of another. Their keys are pairwise disjoint (checked here), so no request can observe
    another's effect and the order inside the entry does not matter: applying the group gives
    every request the result it would get alone at this log index, and each written record gets
    a version no other write in the entry shares (versions are log indexes).
    """

    reqs: tuple[WriteCmd, ...]

    def __post_init__(self) -> None:
        if len(self.reqs) < 2:
            raise ValueError("GroupCmd needs at least two requests (one is a WriteCmd)")
        seen: set[str] = set()
        for req in self.reqs:
            if not isinstance(req, WriteCmd):
                raise ValueError(f"not a WriteCmd: {req!r}")
            keys = {op.key for op in req.ops}
            if not seen.isdisjoint(keys):
                raise ValueError("GroupCmd requests must touch disjoint keys")
            seen |= keys


Command = WriteCmd | ExpireCmd | BarrierCmd | DigestCmd | GroupCmd


def write_keys(cmd: WriteCmd) -> frozenset[str]:
    return frozenset(op.key for op in cmd.ops)


def approx_size(cmd: WriteCmd) -> int:
    """An upper-bound-ish estimate of the encoded size of ``cmd`` (bytes), without encoding it:
    what group commit bounds a batch by."""
    size = 32
    for op in cmd.ops:
        size += 64 + 4 * len(op.key)  # JSON escaping and UTF-8 can grow a char to a few bytes
        if isinstance(op, kvops.Put):
            size += 4 * len(op.value)
        if op.cond.if_value is not None:
            size += 4 * len(op.cond.if_value)
    return size


def encode(cmd: Command) -> bytes:
    body: dict[str, Any]
    if isinstance(cmd, WriteCmd):
        body = {"t": "w", **_write_to_json(cmd)}
    elif isinstance(cmd, GroupCmd):
        body = {"t": "g", "reqs": [_write_to_json(r) for r in cmd.reqs]}
    elif isinstance(cmd, ExpireCmd):
        body = {"t": "e", "now": cmd.now_ms, "limit": cmd.limit}
    elif isinstance(cmd, BarrierCmd):
        body = {"t": "b"}
    elif isinstance(cmd, DigestCmd):
        body = {"t": "d"}
    else:
        raise TypeError(f"not a command: {cmd!r}")
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    return bytes([FORMAT_JSON_V1]) + text.encode("utf-8", "surrogatepass")


def decode(data: bytes) -> Command:
    """Inverse of ``encode``; ValueError on anything else."""
    if not isinstance(data, bytes | bytearray) or not data:
        raise ValueError("empty or non-bytes command")
    if data[0] != FORMAT_JSON_V1:
        raise ValueError(f"unknown command format {data[0]}")
    try:
        body = json.loads(bytes(data[1:]).decode("utf-8", "surrogatepass"))
        return _from_json(body)
    except (TypeError, KeyError, IndexError, RecursionError) as e:
        raise ValueError(f"malformed command: {e}") from None


def _from_json(body: Any) -> Command:
    if not isinstance(body, dict):
        raise ValueError("command is not an object")
    kind = body.get("t")
    if kind == "w" and body.keys() == {"t", "now", "ops"}:
        return _write_from_json(body)
    if kind == "g" and body.keys() == {"t", "reqs"}:
        if not isinstance(body["reqs"], list):
            raise ValueError("reqs is not a list")
        for req in body["reqs"]:
            if not isinstance(req, dict) or req.keys() != {"now", "ops"}:
                raise ValueError("a grouped request is not {now, ops}")
        return GroupCmd(reqs=tuple(_write_from_json(r) for r in body["reqs"]))
    if kind == "e" and body.keys() == {"t", "now", "limit"}:
        return ExpireCmd(now_ms=body["now"], limit=body["limit"])
    if kind == "b" and body.keys() == {"t"}:
        return BarrierCmd()
    if kind == "d" and body.keys() == {"t"}:
        return DigestCmd()
    raise ValueError(f"unknown command shape {sorted(body)}")


def _write_to_json(cmd: WriteCmd) -> dict[str, Any]:
    return {"now": cmd.now_ms, "ops": [_op_to_json(op) for op in cmd.ops]}


def _write_from_json(body: dict[str, Any]) -> WriteCmd:
    if not isinstance(body["ops"], list):
        raise ValueError("ops is not a list")
    return WriteCmd(ops=tuple(_op_from_json(o) for o in body["ops"]), now_ms=body["now"])


def _op_to_json(op: kvops.Put | kvops.Delete) -> list[Any]:
    if isinstance(op, kvops.Put):
        return ["p", op.key, op.value, op.ttl_ms, op.cond.if_version, op.cond.if_value]
    return ["d", op.key, op.cond.if_version, op.cond.if_value]


def _op_from_json(raw: Any) -> kvops.Put | kvops.Delete:
    if not isinstance(raw, list) or not raw:
        raise ValueError("op is not a non-empty list")
    if raw[0] == "p" and len(raw) == 6:
        _, key, value, ttl, if_version, if_value = raw
        cond = kvops.Condition(if_version=if_version, if_value=if_value)
        return kvops.Put(key=key, value=value, ttl_ms=ttl, cond=cond)
    if raw[0] == "d" and len(raw) == 4:
        _, key, if_version, if_value = raw
        return kvops.Delete(key=key, cond=kvops.Condition(if_version=if_version, if_value=if_value))
    raise ValueError(f"unknown op shape {raw[:1]!r}/{len(raw)}")


def _check_int(name: str, v: object, *, minimum: int = 0) -> None:
    if type(v) is not int or not minimum <= v <= MAX_INT:
        raise ValueError(f"{name} must be an int in [{minimum}, 2**63), got {v!r}")


def _check_str(name: str, v: object) -> None:
    if type(v) is not str:
        raise ValueError(f"{name} must be a string, got {type(v).__name__}")


def _check_op(op: object) -> None:
    if not isinstance(op, kvops.Put | kvops.Delete):
        raise ValueError(f"not an op: {op!r}")
    _check_str("key", op.key)
    if isinstance(op, kvops.Put):
        _check_str("value", op.value)
        if op.ttl_ms is not None:
            _check_int("ttl_ms", op.ttl_ms, minimum=1)
    if not isinstance(op.cond, kvops.Condition):
        raise ValueError("cond must be a Condition")
    if op.cond.if_version is not None:
        _check_int("if_version", op.cond.if_version)
    if op.cond.if_value is not None:
        _check_str("if_value", op.cond.if_value)
