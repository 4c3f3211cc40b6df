"""Structure-aware fuzzing of the Raft command decoder and the processor behind it.

``test_commands`` feeds the decoder random bytes; most of those die at the format byte or the
JSON parser. Here every input is a *valid* command's JSON with one node of its tree replaced,
removed or added (wrong types, huge and negative ints, floats, NaN, lone surrogates, nesting),
which reaches the shape checks. The property, on both engines (in-memory and a real LevelDB):
``decode`` either refuses with ValueError or returns a command that re-encodes to itself, and
applying such a command never raises and is all-or-nothing — a failed condition changes
nothing but the applied index; a success writes every op at the entry's index.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from kvnode.core import model
from kvnode.raft import commands
from kvnode.raft.processor import CommandProcessor
from kvnode.storage.leveldb import LevelDBStore
from kvnode.storage.memory import MemoryStore

from tests.unit.raft.test_commands import any_cmd, write_cmds

Path = tuple[Any, ...]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=6)
    | st.sampled_from(["p", "d", "w", "e", "b", "t", "now", "ops", "limit", "\ud800"])
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=10,
)


def paths(node: Any, here: Path = ()) -> Iterator[Path]:
    yield here
    if isinstance(node, dict):
        for k, v in node.items():
            yield from paths(v, (*here, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from paths(v, (*here, i))


def mutate(body: Any, path: Path, action: str, value: Any) -> Any:
    if not path:
        return value
    parent = body
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if action == "replace":
        parent[last] = value
    elif action == "delete":
        del parent[last]
    elif isinstance(parent, list):
        parent.insert(last, value)
    else:
        parent[f"{last}x"] = value
    return body


@st.composite
def mutated_commands(draw: st.DrawFn) -> bytes:
    body = json.loads(commands.encode(draw(any_cmd))[1:].decode("utf-8", "surrogatepass"))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(list(paths(body))))
        action = draw(st.sampled_from(["replace", "delete", "insert"]))
        body = mutate(body, path, action, draw(json_values))
    text = json.dumps(body, ensure_ascii=False)
    return b"\x01" + text.encode("utf-8", "surrogatepass")


def seeded(store: MemoryStore | LevelDBStore, cmd: commands.Command) -> None:
    """Every other key the command touches exists (at version 1), so conditions both hold
    and fail."""
    keys = [op.key for op in cmd.ops] if isinstance(cmd, commands.WriteCmd) else []
    puts = {k: model.Record(value="seed", version=1) for k in keys[::2]}
    store.apply(1, puts=puts, deletes=())


def contents(store: MemoryStore | LevelDBStore) -> list[tuple[str, model.Record]]:
    return store.scan(limit=1_000_000)


def apply_checked(store: MemoryStore | LevelDBStore, cmd: commands.Command) -> None:
    seeded(store, cmd)
    before = contents(store)
    result = CommandProcessor().apply(store, cmd, 1000)
    assert store.applied_index() == 1000
    event(f"{type(cmd).__name__} {'condition failed' if result.failure else 'applied'}")
    if result.failure is not None:
        assert contents(store) == before  # nothing partially applied
        return
    if isinstance(cmd, commands.WriteCmd):
        assert len(result.results) == len(cmd.ops)
        for op in cmd.ops:
            got = store.get(op.key)
            if isinstance(op, commands.kvops.Put):
                assert got is not None
                assert (got.value, got.version) == (op.value, 1000)
            else:
                assert got is None


@given(mutated_commands())
@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_mutated_commands_are_refused_or_applied_all_or_nothing(data: bytes) -> None:
    try:
        cmd = commands.decode(data)
    except ValueError:
        event("refused")
        return
    assert commands.decode(commands.encode(cmd)) == cmd
    apply_checked(MemoryStore(), cmd)
    with tempfile.TemporaryDirectory() as tmp:
        store = LevelDBStore.open(tmp)
        try:
            apply_checked(store, cmd)
        finally:
            store.close()


def test_the_mutator_reaches_the_shape_checks() -> None:
    """Guard against a fuzzer that only makes JSON errors: a few fixed mutations reach the
    checks behind the parser (and some stay valid)."""
    base = json.loads(commands.encode(commands.ExpireCmd(now_ms=5, limit=2))[1:])
    refused = mutate(json.loads(json.dumps(base)), ("now",), "replace", math.inf)
    with pytest.raises(ValueError, match="now_ms"):
        commands.decode(b"\x01" + json.dumps(refused).encode())
    kept = mutate(json.loads(json.dumps(base)), ("limit",), "replace", 7)
    assert commands.decode(b"\x01" + json.dumps(kept).encode()) == commands.ExpireCmd(5, 7)


@given(write_cmds, st.sampled_from(["memory", "leveldb"]))
@settings(max_examples=150, deadline=None)
def test_valid_batches_with_random_conditions_apply_all_or_nothing(
    cmd: commands.WriteCmd, engine: str
) -> None:
    if engine == "memory":
        apply_checked(MemoryStore(), cmd)
        return
    with tempfile.TemporaryDirectory() as tmp:
        store = LevelDBStore.open(tmp)
        try:
            apply_checked(store, cmd)
        finally:
            store.close()
