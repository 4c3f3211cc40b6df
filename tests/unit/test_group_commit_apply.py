"""Group commit in the state machine: the ``GroupCmd`` encoding (old entries still decode) and
applying a group = applying its requests one by one, in one atomic store write."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kvnode.core.model import Record
from kvnode.core.ops import Condition, Delete, Put, WriteResult
from kvnode.raft import commands
from kvnode.raft.commands import GroupCmd, WriteCmd
from kvnode.raft.processor import ApplyResult, CommandProcessor, GroupApplyResult
from kvnode.storage import engine
from kvnode.storage.leveldb import LevelDBStore
from kvnode.storage.memory import MemoryStore

P = CommandProcessor()
KEYS = [f"k{i}" for i in range(8)]


def w(*ops: Put | Delete, now: int = 1_000) -> WriteCmd:
    return WriteCmd(ops=tuple(ops), now_ms=now)


# -- encoding ----------------------------------------------------------------------------------
def test_a_journal_entry_written_before_group_commit_decodes_and_applies() -> None:
    # Bytes exactly as the release without group commit wrote them to the journal.
    old = b'\x01{"t":"w","now":9,"ops":[["p","k","v",5,null,null],["d","d",3,null]]}'
    cmd = commands.decode(old)
    assert cmd == w(Put("k", "v", ttl_ms=5), Delete("d", Condition(if_version=3)), now=9)
    store = MemoryStore()
    result = P.apply(store, cmd, 7)
    assert isinstance(result, ApplyResult)
    assert result.failure is not None
    assert P.apply(store, commands.decode(old.replace(b",3,", b",0,")), 8) == ApplyResult(
        index=8, results=(WriteResult("k", 8, False), WriteResult("d", 0, False))
    )


def test_group_encoding_is_compact_and_a_lone_write_keeps_the_old_format() -> None:
    group = GroupCmd(reqs=(w(Put("a", "1"), now=5), w(Delete("b"), now=6)))
    assert commands.encode(group) == (
        b'\x01{"t":"g","reqs":[{"now":5,"ops":[["p","a","1",null,null,null]]},'
        b'{"now":6,"ops":[["d","b",null,null]]}]}'
    )
    assert commands.encode(w(Put("a", "1"), now=5)).startswith(b'\x01{"t":"w"')


texts = st.text(max_size=6)
conds = st.builds(
    Condition,
    if_version=st.none() | st.integers(0, 40),
    if_value=st.none() | st.sampled_from(["", "x", "y"]),
)
puts = st.builds(
    Put,
    key=st.sampled_from(KEYS),
    value=st.sampled_from(["", "x", "y", "zz"]),
    ttl_ms=st.none() | st.integers(1, 50),
    cond=conds,
)
dels = st.builds(Delete, key=st.sampled_from(KEYS), cond=conds)
writes = st.builds(
    WriteCmd,
    ops=st.lists(puts | dels, min_size=1, max_size=3, unique_by=lambda op: op.key).map(tuple),
    now_ms=st.integers(1_000, 1_060),
)


@st.composite
def disjoint_requests(draw: Any) -> list[WriteCmd]:
    """2..6 requests touching pairwise disjoint keys."""
    out: list[WriteCmd] = []
    used: set[str] = set()
    for cmd in draw(st.lists(writes, min_size=2, max_size=8)):
        keys = commands.write_keys(cmd)
        if used.isdisjoint(keys):
            out.append(cmd)
            used |= keys
    if len(out) < 2:
        out = [w(Put("solo-a", "1")), w(Delete("solo-b"))]
    return out


@given(disjoint_requests())
@settings(max_examples=200)
def test_group_round_trip(reqs: list[WriteCmd]) -> None:
    cmd = GroupCmd(reqs=tuple(reqs))
    assert commands.decode(commands.encode(cmd)) == cmd


def test_group_rules_are_enforced_when_built_and_when_decoded() -> None:
    with pytest.raises(ValueError, match="disjoint"):
        GroupCmd(reqs=(w(Put("a", "1")), w(Delete("a"))))
    with pytest.raises(ValueError, match="at least two"):
        GroupCmd(reqs=(w(Put("a", "1")),))
    overlapping = (
        b'\x01{"t":"g","reqs":[{"now":5,"ops":[["p","a","1",null,null,null]]},'
        b'{"now":6,"ops":[["d","a",null,null]]}]}'
    )
    for bad in (
        overlapping,
        b'\x01{"t":"g","reqs":{}}',
        b'\x01{"t":"g","reqs":[{"now":5}]}',
        b'\x01{"t":"g","reqs":[{"now":5,"ops":[]},{"now":5,"ops":[]}]}',
        b'\x01{"t":"g","reqs":[],"x":1}',
    ):
        with pytest.raises(ValueError, match=r"disjoint|not a list|grouped request|shape|op"):
            commands.decode(bad)


# -- applying: a group of N requests == the N requests one by one --------------------------------
def _prepared(history: list[WriteCmd]) -> MemoryStore:
    store = MemoryStore()
    for i, cmd in enumerate(history, start=1):
        P.apply(store, cmd, i)
    return store


def _normal(r: ApplyResult, own_index: int) -> tuple[Any, ...]:
    """A request's result with the version it wrote itself (its entry's index) made symbolic."""
    results = tuple(
        (x.key, "own" if x.version == own_index else x.version, x.existed) for x in r.results
    )
    return (results, r.failure)


def _records(store: MemoryStore, first_new: int) -> dict[str, tuple[Any, ...]]:
    out = {}
    for key, rec in store.scan(limit=1000):
        version: Any = "new" if rec.version >= first_new else rec.version
        out[key] = (rec.value, version, rec.expires_at_ms)
    return out


@given(st.lists(writes, max_size=12), disjoint_requests())
@settings(max_examples=300, deadline=None)
def test_a_group_gives_each_request_what_it_gets_alone(
    history: list[WriteCmd], reqs: list[WriteCmd]
) -> None:
    base = len(history) + 1
    grouped, alone = _prepared(history), _prepared(history)
    result = P.apply(grouped, GroupCmd(reqs=tuple(reqs)), base)
    assert isinstance(result, GroupApplyResult)
    assert not result.skipped
    assert len(result.requests) == len(reqs)
    for k, (req, mine) in enumerate(zip(reqs, result.requests, strict=True)):
        one = P.apply(alone, req, base + k)
        assert isinstance(one, ApplyResult)
        assert mine.index == base
        assert _normal(mine, base) == _normal(one, base + k)
    assert _records(grouped, base) == _records(alone, base)
    assert grouped.applied_index() == base
    # The watch history sees the same changes, request by request, as if applied alone.
    separately = []
    replay = _prepared(history)
    for k, req in enumerate(reqs):
        one = P.apply(replay, req, base + k)
        separately.extend(one.effects)
    assert result.effects == tuple(separately)


class CountingStore:
    """A real store that counts its atomic writes."""

    def __init__(self, inner: engine.PartitionStore) -> None:
        self.inner = inner
        self.applies = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def apply(self, index: int, *, puts: Any, deletes: Any) -> None:
        self.applies += 1
        self.inner.apply(index, puts=puts, deletes=deletes)


def test_one_leveldb_write_batch_per_group_and_a_failed_cas_stays_its_own(tmp_path: Path) -> None:
    db = LevelDBStore.open(str(tmp_path / "db"), sync=True)
    store = CountingStore(db)
    P.apply(store, w(Put("a", "0"), Put("b", "0")), 1)  # type: ignore[arg-type]
    group = GroupCmd(
        reqs=(
            w(Put("a", "1", cond=Condition(if_version=1))),  # holds
            w(Put("b", "1", cond=Condition(if_version=99))),  # fails: changes nothing of its own
            w(Put("c", "1"), Delete("d")),
        )
    )
    store.applies = 0
    result = P.apply(store, group, 2)  # type: ignore[arg-type]
    assert store.applies == 1
    assert isinstance(result, GroupApplyResult)
    ok_a, failed_b, ok_c = result.requests
    assert ok_a == ApplyResult(index=2, results=(WriteResult("a", 2, True),))
    assert failed_b.failure is not None
    assert failed_b.failure.current_version == 1
    assert failed_b.failure.to_error().details["index"] == 0
    assert ok_c.results == (WriteResult("c", 2, False), WriteResult("d", 0, False))
    assert db.get("a") == Record("1", 2, None)
    assert db.get("b") == Record("0", 1, None)
    assert db.get("c") == Record("1", 2, None)
    # The journal replays the entry after a restart: recognised, nothing applied twice.
    assert P.apply(store, group, 2) == GroupApplyResult(index=2, skipped=True)  # type: ignore[arg-type]
    db.close()
