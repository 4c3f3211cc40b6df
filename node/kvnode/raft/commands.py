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


Command = WriteCmd | ExpireCmd | BarrierCmd | DigestCmd


def encode(cmd: Command) -> bytes:
    body: dict[str, Any]
    if isinstance(cmd, WriteCmd):
        body = {"t": "w", "now": cmd.now_ms, "ops": [_op_to_json(op) for op in cmd.ops]}
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
        if not isinstance(body["ops"], list):
            raise ValueError("ops is not a list")
        return WriteCmd(ops=tuple(_op_from_json(o) for o in body["ops"]), now_ms=body["now"])
    if kind == "e" and body.keys() == {"t", "now", "limit"}:
        return ExpireCmd(now_ms=body["now"], limit=body["limit"])
    if kind == "b" and body.keys() == {"t"}:
        return BarrierCmd()
    if kind == "d" and body.keys() == {"t"}:
        return DigestCmd()
    raise ValueError(f"unknown command shape {sorted(body)}")


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
