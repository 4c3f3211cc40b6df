"""The command processor on both engines, plus a model-based property test against a dict."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kvnode.core import errors
from kvnode.core.model import Record
from kvnode.core.ops import Condition, Delete, Put, WriteResult
from kvnode.raft.commands import BarrierCmd, Command, ExpireCmd, WriteCmd
from kvnode.raft.processor import ApplyResult, CommandProcessor, ConditionFailure
from kvnode.storage import engine
from kvnode.storage.leveldb import LevelDBStore
from kvnode.storage.memory import MemoryStore

P = CommandProcessor()


@pytest.fixture(params=["memory", "leveldb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[engine.PartitionStore]:
    s: engine.PartitionStore
    s = MemoryStore() if request.param == "memory" else LevelDBStore.open(str(tmp_path / "db"))
    yield s
    s.close()


def write(*ops: Put | Delete, now: int = 1_000) -> WriteCmd:
    return WriteCmd(ops=tuple(ops), now_ms=now)


def test_put_get_and_versions_are_indexes(store: engine.PartitionStore) -> None:
    r = P.apply(store, write(Put("a", "1")), 5)
    assert r == ApplyResult(index=5, results=(WriteResult("a", 5, existed=False),))
    assert r.ok
    r = P.apply(store, write(Put("a", "2")), 8)
    assert r.results == (WriteResult("a", 8, existed=True),)
    assert store.get("a") == Record("2", 8)
    assert store.applied_index() == 8


def test_delete_reports_previous_version(store: engine.PartitionStore) -> None:
    P.apply(store, write(Put("a", "1")), 1)
    r = P.apply(store, write(Delete("a"), Delete("never")), 2)
    assert r.results == (WriteResult("a", 1, existed=True), WriteResult("never", 0, existed=False))
    assert store.get("a") is None


def test_cas_by_version(store: engine.PartitionStore) -> None:
    assert P.apply(store, write(Put("c", "0", cond=Condition(if_version=0))), 1).ok
    r = P.apply(store, write(Put("c", "x", cond=Condition(if_version=0))), 2)
    assert r.failure == ConditionFailure(op_index=0, key="c", current_version=1)
    assert P.apply(store, write(Put("c", "1", cond=Condition(if_version=1))), 3).ok
    r = P.apply(store, write(Delete("c", cond=Condition(if_version=1))), 4)
    assert r.failure == ConditionFailure(0, "c", 3)
    assert P.apply(store, write(Delete("c", cond=Condition(if_version=3))), 5).ok
    assert store.get("c") is None
    assert store.applied_index() == 5


def test_cas_by_value(store: engine.PartitionStore) -> None:
    r = P.apply(store, write(Put("v", "new", cond=Condition(if_value=""))), 1)
    assert r.failure == ConditionFailure(0, "v", 0)  # absent never matches a value
    P.apply(store, write(Put("v", "old")), 2)
    assert P.apply(store, write(Put("v", "x", cond=Condition(if_value="nope"))), 3).failure
    assert P.apply(store, write(Put("v", "new", cond=Condition(if_value="old"))), 4).ok
    both = Condition(if_version=4, if_value="wrong")
    assert P.apply(store, write(Delete("v", cond=both)), 5).failure == ConditionFailure(0, "v", 4)
    assert store.get("v") == Record("new", 4)


def test_failure_builds_precondition_failed() -> None:
    err = ConditionFailure(op_index=2, key="k", current_version=7).to_error()
    assert isinstance(err, errors.PreconditionFailed)
    assert err.to_dict() == {
        "code": "precondition_failed",
        "message": err.message,
        "key": "k",
        "current_version": 7,
        "index": 2,
    }


def test_batch_is_all_or_nothing(store: engine.PartitionStore) -> None:
    P.apply(store, write(Put("a", "1"), Put("b", "1")), 1)
    digest = store.digest()
    r = P.apply(
        store, write(Put("a", "2"), Delete("b"), Put("c", "3", cond=Condition(if_version=9))), 2
    )
    assert r.failure == ConditionFailure(op_index=2, key="c", current_version=0)
    assert r.results == ()
    assert store.digest() == digest
    assert store.applied_index() == 2
    r = P.apply(store, write(Put("a", "2", cond=Condition(if_version=1)), Delete("b")), 3)
    assert r.results == (WriteResult("a", 3, True), WriteResult("b", 1, True))


def test_conditions_see_state_before_the_batch(store: engine.PartitionStore) -> None:
    P.apply(store, write(Put("a", "1")), 1)
    r = P.apply(store, write(Put("a", "2"), Put("b", "x", cond=Condition(if_version=0))), 2)
    assert r.ok


def test_ttl_expired_records_are_absent_for_conditions(store: engine.PartitionStore) -> None:
    P.apply(store, write(Put("t", "v", ttl_ms=100), now=1_000), 1)
    assert store.get("t") == Record("v", 1, expires_at_ms=1_100)
    r = P.apply(store, write(Put("t", "w", cond=Condition(if_version=1)), now=1_099), 2)
    assert r.ok
    P.apply(store, write(Put("u", "v", ttl_ms=10), now=2_000), 3)
    r = P.apply(store, write(Put("u", "x", cond=Condition(if_value="v")), now=2_010), 4)
    assert r.failure == ConditionFailure(0, "u", 0)
    r = P.apply(store, write(Put("u", "y", cond=Condition(if_version=0)), now=2_010), 5)
    assert r.results == (WriteResult("u", 5, existed=False),)
    P.apply(store, write(Put("w", "v", ttl_ms=1), now=0), 6)
    r = P.apply(store, write(Delete("w"), now=5), 7)
    assert r.results == (WriteResult("w", 0, existed=False),)
    assert store.get("w") is None  # the expired record is removed, not left behind


def test_expire_cmd_removes_expired_and_respects_overwrites(store: engine.PartitionStore) -> None:
    P.apply(store, write(Put("a", "1", ttl_ms=10), Put("b", "1", ttl_ms=20), now=0), 1)
    P.apply(store, write(Put("c", "1", ttl_ms=5), Put("keep", "1"), now=0), 2)
    P.apply(store, write(Put("a", "2"), now=1), 3)  # TTL'd key overwritten without TTL
    r = P.apply(store, ExpireCmd(now_ms=15, limit=10), 4)
    assert r.expired == 1  # only c: a lost its TTL, b not yet due
    assert store.get("a") == Record("2", 3)
    assert store.get("c") is None
    r = P.apply(store, ExpireCmd(now_ms=100, limit=10), 5)
    assert r.expired == 1
    assert sorted(k for k, _ in store.scan(limit=10)) == ["a", "keep"]
    assert store.expired_keys(10**12, 10) == []
    assert store.applied_index() == 5


def test_expire_cmd_limit(store: engine.PartitionStore) -> None:
    P.apply(store, write(*(Put(f"k{i}", "v", ttl_ms=1 + i) for i in range(5)), now=0), 1)
    assert P.apply(store, ExpireCmd(now_ms=100, limit=2), 2).expired == 2
    assert [k for k, _ in store.scan(limit=10)] == ["k2", "k3", "k4"]
    assert P.apply(store, ExpireCmd(now_ms=100, limit=0), 3).expired == 0
    assert store.applied_index() == 3


def test_barrier_only_advances_applied_index(store: engine.PartitionStore) -> None:
    P.apply(store, write(Put("a", "1")), 1)
    digest = store.digest()
    assert P.apply(store, BarrierCmd(), 2) == ApplyResult(index=2)
    assert store.applied_index() == 2
    assert store.digest() == digest


def test_replayed_entries_are_skipped(store: engine.PartitionStore) -> None:
    P.apply(store, write(Put("a", "1")), 1)
    P.apply(store, write(Put("a", "2")), 2)
    for idx, cmd in [(1, write(Put("a", "1"))), (2, write(Put("a", "2"))), (2, BarrierCmd())]:
        r = P.apply(store, cmd, idx)
        assert r.skipped
        assert not r.ok
    assert store.get("a") == Record("2", 2)
    assert store.applied_index() == 2


def test_same_commands_give_same_digest(tmp_path: Path) -> None:
    cmds: list[Command] = [
        write(Put("a", "1", ttl_ms=50), Put("b", "2"), now=0),
        write(Put("a", "x", cond=Condition(if_version=7)), now=10),
        ExpireCmd(now_ms=60, limit=10),
        write(Delete("b"), Put("c", "\u00e9"), now=70),
        BarrierCmd(),
    ]
    stores = [
        MemoryStore(),
        LevelDBStore.open(str(tmp_path / "1")),
        LevelDBStore.open(str(tmp_path / "2")),
    ]
    for s in stores:
        for i, cmd in enumerate(cmds, start=1):
            P.apply(s, cmd, i)
    assert len({s.digest() for s in stores}) == 1
    # A replica restored from a dump continues identically.
    restored = MemoryStore()
    restored.load_dump(stores[1].iter_dump())
    for s in (stores[1], restored):
        P.apply(s, write(Put("d", "4"), now=80), 6)
    assert restored.digest() == stores[1].digest()
    for s in stores:
        s.close()


# -- model-based property test ---------------------------------------------------------------


@dataclass
class Model:
    """The obvious dict implementation of the processor's contract."""

    data: dict[str, Record] = field(default_factory=dict)
    applied: int = 0

    def live(self, key: str, now: int) -> Record | None:
        r = self.data.get(key)
        return None if r is None or r.expired(now) else r

    def apply(self, cmd: Command, index: int) -> ApplyResult:
        if index <= self.applied:
            return ApplyResult(index=index, skipped=True)
        self.applied = index
        if isinstance(cmd, BarrierCmd):
            return ApplyResult(index=index)
        if isinstance(cmd, ExpireCmd):
            due = sorted(
                (r.expires_at_ms, k.encode("utf-8", "surrogatepass"), k)
                for k, r in self.data.items()
                if r.expires_at_ms is not None and r.expires_at_ms <= cmd.now_ms
            )[: cmd.limit]
            for _, _, k in due:
                del self.data[k]
            return ApplyResult(index=index, expired=len(due))
        return self.write(cmd, index)

    def write(self, cmd: WriteCmd, index: int) -> ApplyResult:
        for i, op in enumerate(cmd.ops):
            cur = self.live(op.key, cmd.now_ms)
            version = cur.version if cur else 0
            c = op.cond
            if (c.if_version is not None and c.if_version != version) or (
                c.if_value is not None and (cur is None or cur.value != c.if_value)
            ):
                return ApplyResult(index=index, failure=ConditionFailure(i, op.key, version))
        results = []
        for op in cmd.ops:
            cur = self.live(op.key, cmd.now_ms)
            if isinstance(op, Put):
                exp = None if op.ttl_ms is None else cmd.now_ms + op.ttl_ms
                self.data[op.key] = Record(op.value, index, exp)
                results.append(WriteResult(op.key, index, cur is not None))
            else:
                self.data.pop(op.key, None)
                results.append(WriteResult(op.key, cur.version if cur else 0, cur is not None))
        return ApplyResult(index=index, results=tuple(results))


KEYS = ["a", "b", "ab", "\u00e9", "b/1"]
VALUES = ["", "x", "y"]
small_cond = st.builds(
    Condition,
    if_version=st.none() | st.integers(min_value=0, max_value=12),
    if_value=st.none() | st.sampled_from(VALUES),
)
m_put = st.builds(
    Put,
    key=st.sampled_from(KEYS),
    value=st.sampled_from(VALUES),
    ttl_ms=st.none() | st.integers(min_value=1, max_value=60),
    cond=st.just(Condition()) | small_cond,
)
m_delete = st.builds(Delete, key=st.sampled_from(KEYS), cond=st.just(Condition()) | small_cond)
now = st.integers(min_value=0, max_value=150)  # proposers' clocks may go backwards
m_cmd = (
    st.builds(
        WriteCmd,
        ops=st.lists(m_put | m_delete, min_size=1, max_size=4, unique_by=lambda o: o.key).map(
            tuple
        ),
        now_ms=now,
    )
    | st.builds(ExpireCmd, now_ms=now, limit=st.integers(min_value=0, max_value=3))
    | st.just(BarrierCmd())
)
# (command, index step): step 0 or negative replays an index already applied.
steps = st.lists(st.tuples(m_cmd, st.integers(min_value=-2, max_value=2)), max_size=40)


@given(steps=steps, probe=now)
@settings(max_examples=150, deadline=None)
def test_processor_matches_dict_model(steps: list[tuple[Command, int]], probe: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        ldb = LevelDBStore.open(d + "/db")
        mem = MemoryStore()
        model = Model()
        index = 0
        try:
            for cmd, step in steps:
                index = max(index + step, 1) if step > 0 else max(index + step, 0)
                expected = model.apply(cmd, index)
                assert P.apply(ldb, cmd, index) == expected
                assert P.apply(mem, cmd, index) == expected
                index = max(index, model.applied)
            for s in (ldb, mem):
                assert s.applied_index() == model.applied
                assert s.scan(limit=100) == sorted(
                    model.data.items(), key=lambda kv: kv[0].encode()
                )
                expected_due = sorted(
                    (r.expires_at_ms, k.encode())
                    for k, r in model.data.items()
                    if r.expires_at_ms is not None and r.expires_at_ms <= probe
                )
                assert s.expired_keys(probe, 100) == [k.decode() for _, k in expected_due]
                assert s.stats().keys == len(model.data)
            assert ldb.digest() == mem.digest()
        finally:
            ldb.close()
