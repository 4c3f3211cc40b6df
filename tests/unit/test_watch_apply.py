"""Changes as the command processor reports them (``ApplyResult.effects``), recorded into a
``ChangeHistory`` as a replica does: replaying the history reproduces the store exactly."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from kvnode.core.ops import Condition, Delete, Put
from kvnode.raft.commands import BarrierCmd, ExpireCmd, WriteCmd
from kvnode.raft.processor import CommandProcessor
from kvnode.storage.memory import MemoryStore
from kvnode.watch.history import ChangeHistory, HistoryLimits
from kvnode.watch.model import Kind, Position

P = CommandProcessor()


def kinds(result) -> list[tuple[str, str]]:
    return [(e.kind.value, e.key) for e in result.effects]


def test_each_write_kind_reports_its_effects() -> None:
    s = MemoryStore()
    r = P.apply(s, WriteCmd(ops=(Put("a", "1"), Put("b", "2", ttl_ms=10)), now_ms=1000), 1)
    assert kinds(r) == [("put", "a"), ("put", "b")]
    assert r.effects[1].expires_at_ms == 1010
    assert r.effects[0].value == "1"
    # a failed CAS changes nothing: no effect
    r = P.apply(s, WriteCmd(ops=(Put("a", "x", cond=Condition(if_version=7)),), now_ms=1001), 2)
    assert r.failure is not None
    assert r.effects == ()
    r = P.apply(s, WriteCmd(ops=(Put("a", "3", cond=Condition(if_version=1)),), now_ms=1002), 3)
    assert kinds(r) == [("put", "a")]
    assert r.effects[0].prev_version == 1
    # deleting a live key, a missing key, and an expired record the sweep has not removed yet
    r = P.apply(s, WriteCmd(ops=(Delete("a"), Delete("zz"), Delete("b")), now_ms=2000), 4)
    assert kinds(r) == [("delete", "a"), ("expire", "b")]
    assert [e.prev_version for e in r.effects] == [3, 1]
    P.apply(s, WriteCmd(ops=(Put("c", "t", ttl_ms=5),), now_ms=3000), 5)
    r = P.apply(s, ExpireCmd(now_ms=3010, limit=100), 6)
    assert kinds(r) == [("expire", "c")]
    assert r.effects[0].prev_version == 5
    assert P.apply(s, BarrierCmd(), 7).effects == ()
    assert P.apply(s, BarrierCmd(), 7).skipped  # a replayed entry reports nothing


KEY = st.sampled_from(["k1", "k2", "k3", "k4"])
OP = st.one_of(
    st.builds(
        Put,
        key=KEY,
        value=st.text(max_size=5),
        ttl_ms=st.one_of(st.none(), st.integers(1, 50)),
        cond=st.one_of(st.just(Condition()), st.builds(Condition, if_version=st.integers(0, 8))),
    ),
    st.builds(Delete, key=KEY),
)
STEP = st.one_of(
    st.lists(OP, min_size=1, max_size=3, unique_by=lambda o: o.key),
    st.just("expire"),
    st.just("barrier"),
)


@settings(max_examples=150, deadline=None)
@given(steps=st.lists(st.tuples(STEP, st.integers(0, 30)), max_size=30))
def test_replaying_the_history_reproduces_the_store(steps) -> None:
    store = MemoryStore()
    history = ChangeHistory(0, limits=HistoryLimits(), kept_after=0)
    now = 1000
    for index, (step, dt) in enumerate(steps, start=1):
        now += dt
        if step == "expire":
            cmd = ExpireCmd(now_ms=now, limit=100)
        elif step == "barrier":
            cmd = BarrierCmd()
        else:
            cmd = WriteCmd(ops=tuple(step), now_ms=now)
        result = P.apply(store, cmd, index)
        history.record(index, result.effects, ts_ms=now)
    replay: dict[str, tuple[str | None, int]] = {}
    for change, _ in history.read(Position(0), max_changes=10_000).changes:
        if change.kind is Kind.PUT:
            replay[change.key] = (change.value, change.version)
        else:
            assert replay.pop(change.key)[1] == change.prev_version
    stored = {
        k: (r.value, r.version) for k, r in store.scan(prefix="", start_after=None, limit=100)
    }
    assert replay == stored
