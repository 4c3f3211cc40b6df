"""Raft command encoding: exact round trip, strict decoding, invariants enforced at construction."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kvnode.core.ops import Condition, Delete, Put
from kvnode.raft import commands
from kvnode.raft.commands import BarrierCmd, ExpireCmd, WriteCmd

texts = st.text(max_size=12)  # includes lone surrogates, NUL, non-BMP
ints = st.integers(min_value=0, max_value=commands.MAX_INT)
conds = st.builds(Condition, if_version=st.none() | ints, if_value=st.none() | texts)
puts = st.builds(
    Put,
    key=texts,
    value=texts,
    ttl_ms=st.none() | st.integers(min_value=1, max_value=commands.MAX_INT),
    cond=conds,
)
deletes = st.builds(Delete, key=texts, cond=conds)
write_cmds = st.builds(
    WriteCmd,
    ops=st.lists(puts | deletes, min_size=1, max_size=6, unique_by=lambda op: op.key).map(tuple),
    now_ms=ints,
)
any_cmd = (
    write_cmds
    | st.builds(ExpireCmd, now_ms=ints, limit=ints)
    | st.just(BarrierCmd())
    | st.just(commands.DigestCmd())
)


@given(any_cmd)
@settings(max_examples=300)
def test_round_trip(cmd: commands.Command) -> None:
    data = commands.encode(cmd)
    assert data[0] == commands.FORMAT_JSON_V1
    assert commands.decode(data) == cmd


def test_encoding_is_compact_and_stable() -> None:
    cmd = WriteCmd(ops=(Put("k", "v", ttl_ms=5), Delete("d", Condition(if_version=3))), now_ms=9)
    assert commands.encode(cmd) == (
        b'\x01{"t":"w","now":9,"ops":[["p","k","v",5,null,null],["d","d",3,null]]}'
    )
    assert commands.encode(BarrierCmd()) == b'\x01{"t":"b"}'


@given(st.binary(max_size=80))
@settings(max_examples=300)
def test_garbage_raises_value_error(data: bytes) -> None:
    with contextlib.suppress(ValueError):
        commands.decode(data)


def body(obj: object) -> bytes:
    return b"\x01" + json.dumps(obj).encode()


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x02{}",
        b"\x01",
        b"\x01not json",
        b"\x01\xff\xfe",
        body([]),
        body({"t": "x"}),
        body({"t": "b", "extra": 1}),
        body({"t": "e", "now": 1}),
        body({"t": "e", "now": -1, "limit": 1}),
        body({"t": "e", "now": True, "limit": 1}),
        body({"t": "e", "now": 1.5, "limit": 1}),
        body({"t": "e", "now": 2**63, "limit": 1}),
        body({"t": "w", "now": 1, "ops": []}),
        body({"t": "w", "now": 1, "ops": {}}),
        body({"t": "w", "now": 1, "ops": [["p", "k", "v", None, None]]}),
        body({"t": "w", "now": 1, "ops": [["p", "k", 5, None, None, None]]}),
        body({"t": "w", "now": 1, "ops": [["p", "k", "v", 0, None, None]]}),
        body({"t": "w", "now": 1, "ops": [["d", "k", -1, None]]}),
        body({"t": "w", "now": 1, "ops": [["d", None, None, None]]}),
        body({"t": "w", "now": 1, "ops": [["x", "k"]]}),
        body({"t": "w", "now": 1, "ops": [["d", "k", None, None], ["d", "k", None, None]]}),
        body({"t": "w", "now": 1, "ops": [[]]}),
        b"\x01" + b"[" * 100_000,
    ],
)
def test_malformed_inputs_are_refused(data: bytes) -> None:
    with pytest.raises(ValueError, match=r"."):
        commands.decode(data)


def test_constructors_enforce_processor_invariants() -> None:
    with pytest.raises(ValueError, match="distinct"):
        WriteCmd(ops=(Put("a", "1"), Delete("a")), now_ms=0)
    with pytest.raises(ValueError, match="at least one"):
        WriteCmd(ops=(), now_ms=0)
    with pytest.raises(ValueError, match="now_ms"):
        WriteCmd(ops=(Put("a", "1"),), now_ms=-5)
    with pytest.raises(ValueError, match="limit"):
        ExpireCmd(now_ms=0, limit=-1)
    with pytest.raises(TypeError):
        commands.encode("not a command")  # type: ignore[arg-type]
