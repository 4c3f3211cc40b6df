"""Maps during a migration: valid, monotonic, truthful about membership, ending on target."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kvnode.core import placement as pl
from kvnode.core import plan as pm
from kvnode.core import transition as tr
from kvnode.core.model import NodeInfo, PartitionMap

POOL = [f"n{i}" for i in range(8)]


def info(node_id: str, *, port: int = 8000) -> NodeInfo:
    return NodeInfo(node_id, f"{node_id}.local", port, 9000)


def pmap(replicas: list[list[str]], *, epoch: int, nodes: list[str] | None = None) -> PartitionMap:
    ids = nodes if nodes is not None else sorted({n for r in replicas for n in r})
    return PartitionMap.build(
        epoch=epoch,
        nodes=[info(n) for n in ids],
        replicas=replicas,
        replication=max(len(r) for r in replicas),
    )


@st.composite
def maps(draw: st.DrawFn) -> tuple[PartitionMap, PartitionMap]:
    """Arbitrary base/target maps, replication-factor changes and shuffled leaders included."""
    parts = draw(st.integers(1, 10))
    r_cur, r_tgt = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    pick = st.permutations(POOL)
    current = [draw(pick)[:r_cur] for _ in range(parts)]
    target = [draw(pick)[:r_tgt] for _ in range(parts)]
    return pmap(current, epoch=draw(st.integers(0, 50))), pmap(target, epoch=0)


@st.composite
def rebalances(draw: st.DrawFn) -> tuple[PartitionMap, PartitionMap]:
    """Realistic cases: placement before and after a change of node count."""
    p, r = draw(st.integers(4, 32)), draw(st.integers(2, 3))
    n1, n2 = draw(st.integers(r, 6)), draw(st.integers(r, 6))
    before = pl.place([pl.NodeSlot(f"n{i}") for i in range(n1)], partitions=p, replication=r)
    slots = [pl.NodeSlot(f"n{i}") for i in range(n2)]
    after = pl.place(slots, partitions=p, replication=r, previous=before)
    base = pmap([list(m) for m in before], epoch=7, nodes=[f"n{i}" for i in range(n1)])
    target = pmap([list(m) for m in after], epoch=0, nodes=[f"n{i}" for i in range(n2)])
    return base, target


def walk(
    base: PartitionMap, target: PartitionMap, cap: int, rnd: random.Random
) -> list[tuple[pm.PlanProgress, PartitionMap]]:
    """Every progress an executor can pass through (random completion order) with its map."""
    plan = pm.plan_migration(base.replicas, target.replicas)
    progress = pm.PlanProgress()
    seen = [(progress, tr.map_at(base, target, plan, progress))]
    while not pm.is_done(plan, progress):
        ready = list(pm.next_steps(plan, progress, max_concurrent=cap))
        for step in rnd.sample(ready, rnd.randint(1, len(ready))):
            progress = pm.advance(progress, step, plan=plan)
            seen.append((progress, tr.map_at(base, target, plan, progress)))
    return seen


def check_walk(base: PartitionMap, target: PartitionMap, cap: int, rnd: random.Random) -> None:
    plan = pm.plan_migration(base.replicas, target.replicas)
    seen = walk(base, target, cap, rnd)
    assert seen[0][1].epoch == tr.announce_epoch(base) == base.epoch + 1
    assert seen[0][1].replicas == (base.replicas if plan.moves else target.replicas)
    epochs = [m.epoch for _, m in seen]
    assert epochs == sorted(set(epochs))  # strictly increasing
    for progress, m in seen:
        m.validate()
        assert m.replication == target.replication
        for move in plan.moves:
            p = move.partition
            done = move.steps[: progress.steps_done(p)]
            voters, fresh = pm.voters_after(base.replicas[p], done)
            assert set(m.replicas[p]) == voters  # the map states the actual membership
            assert fresh & voters  # no prefix removes every up-to-date member
            assert m.replicas[p][0] in fresh  # the preferred leader is always up to date
            verified = {s.node_id for s in done if s.kind is pm.StepKind.VERIFY}
            first = m.replicas[p][0]
            # ... and never a joiner that is not verified yet (housekeeping would hand it the lead)
            assert first in base.replicas[p] or first in verified, (first, done)
            assert tr.trusted_voters(base.replicas[p], done) == {
                n for n in voters & fresh if n in base.replicas[p] or n in verified
            }
        if not pm.is_done(plan, progress):
            assert {n.node_id for n in m.nodes} == {n.node_id for n in base.nodes + target.nodes}
    final = seen[-1][1]
    assert final.replicas == target.replicas
    assert final.nodes == target.nodes
    assert final.epoch == tr.final_epoch(base, plan) == base.epoch + 1 + plan.total_steps
    assert tr.aborted_epoch(base, plan) > max(epochs)


@settings(max_examples=80, deadline=None)
@given(maps(), st.integers(1, 4), st.randoms(use_true_random=False))
def test_maps_along_arbitrary_plans(
    case: tuple[PartitionMap, PartitionMap], cap: int, rnd: random.Random
) -> None:
    check_walk(*case, cap, rnd)


@settings(max_examples=40, deadline=None)
@given(rebalances(), st.integers(1, 4), st.randoms(use_true_random=False))
def test_maps_along_rebalances(
    case: tuple[PartitionMap, PartitionMap], cap: int, rnd: random.Random
) -> None:
    check_walk(*case, cap, rnd)


@settings(max_examples=50, deadline=None)
@given(maps(), st.randoms(use_true_random=False))
def test_rolled_back_partitions_are_back_at_base_above_every_epoch(
    case: tuple[PartitionMap, PartitionMap], rnd: random.Random
) -> None:
    base, target = case
    plan = pm.plan_migration(base.replicas, target.replicas)
    seen = walk(base, target, 2, rnd)
    progress, _ = seen[rnd.randrange(len(seen))]
    rolled = frozenset(m.partition for m in plan.moves if rnd.random() < 0.5)
    m = tr.map_at(base, target, plan, progress, rolled_back=rolled)
    m.validate()
    assert all(m.replicas[p] == base.replicas[p] for p in rolled)
    expected = tr.map_at(base, target, plan, progress)
    others = [p for p in range(base.partitions) if p not in rolled]
    assert [m.replicas[p] for p in others] == [expected.replicas[p] for p in others]
    aborted = tr.aborted_map(base, target, plan, progress, rolled_back=rolled)
    assert aborted.epoch == tr.aborted_epoch(base, plan) > max(x.epoch for _, x in seen)
    if rolled:
        assert m.epoch == aborted.epoch
    assert aborted.replicas == m.replicas


def test_replacing_a_leader_step_by_step() -> None:
    base = pmap([["a", "b", "c"]], epoch=3)
    target = pmap([["d", "b", "c"]], epoch=0, nodes=["b", "c", "d"])
    plan = pm.plan_migration(base.replicas, target.replicas)
    rows = []
    progress = pm.PlanProgress()
    for step in plan.moves[0].steps:
        progress = pm.advance(progress, step, plan=plan)
        m = tr.map_at(base, target, plan, progress)
        rows.append((step.kind.value, m.epoch, m.replicas[0]))
    # From the move's first step the preferred leader is the first trusted voter that stays,
    # so housekeeping moves leadership off the leaving node early; d leads once it is verified
    # (never merely caught up: then it would lead its own VERIFY, the abort of issue 8).
    assert rows == [
        ("seed", 5, ("b", "c", "a")),
        ("add", 6, ("b", "c", "a", "d")),  # d votes but is not up to date: last
        ("catch_up", 7, ("b", "c", "a", "d")),  # up to date, not verified: still not preferred
        ("verify", 8, ("d", "b", "c", "a")),
        ("transfer_leader", 9, ("d", "b", "c", "a")),
        ("remove", 10, ("d", "b", "c")),
        ("drop", 11, ("d", "b", "c")),
        ("prefer_leader", 12, ("d", "b", "c")),
    ]
    assert [n.node_id for n in m.nodes] == ["b", "c", "d"]


def test_union_prefers_the_target_node_info_and_sizes_must_match() -> None:
    base = pmap([["a", "b"]], epoch=1)
    target = PartitionMap.build(
        epoch=0, nodes=[info("a", port=1), info("c")], replicas=[["a", "c"]], replication=2
    )
    plan = pm.plan_migration(base.replicas, target.replicas)
    m = tr.map_at(base, target, plan, pm.PlanProgress())
    assert [(n.node_id, n.http_port) for n in m.nodes] == [("a", 1), ("b", 8000), ("c", 8000)]
    with pytest.raises(ValueError, match="differ in size"):
        tr.map_at(base, pmap([["a"], ["b"]], epoch=0), plan, pm.PlanProgress())


def test_a_reseeded_member_is_not_trusted_before_its_verify() -> None:
    """A reseed removes a member and adds a fresh copy under the same id: until VERIFY it must
    not be preferred as leader (housekeeping would hand an unchecked copy leadership)."""
    base = pmap([["c", "a", "b"]], epoch=3)
    plan = pm.plan_replacement(base.replicas, [(0, "c", "c")])
    steps = plan.moves[0].steps
    seen = []
    for k in range(len(steps) + 1):
        progress = pm.PlanProgress(((0, k),)) if k else pm.PlanProgress()
        m = tr.map_at(base, base, plan, progress)
        seen.append(m.replicas[0])
        assert m.epoch == base.epoch + 1 + k
        trusted = tr.trusted_voters(base.replicas[0], steps[:k])
        assert m.replicas[0][0] in trusted
        if 0 < k < len(steps):
            assert "c" not in trusted
    assert seen[1] == ("a", "b")  # removed first
    assert seen[-1] == ("c", "a", "b")  # back, in the target's order, once verified
