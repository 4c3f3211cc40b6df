"""Migration plans: quorum on every prefix, one change at a time, caps, resumability."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kvnode.core import placement as pl
from kvnode.core import plan as pm
from kvnode.core.plan import Step, StepKind, plan_replacement, voters_after

K = StepKind
POOL = [f"n{i}" for i in range(8)]


@st.composite
def maps(draw: st.DrawFn, *, min_size: int = 2) -> tuple[list[list[str]], list[list[str]]]:
    """Arbitrary current/target maps, including replication-factor changes and shuffled leaders."""
    parts = draw(st.integers(1, 12))
    r_cur = draw(st.integers(min_size, 5))
    r_tgt = draw(st.integers(1, 5))
    pick = st.permutations(POOL)
    current = [draw(pick)[:r_cur] for _ in range(parts)]
    target = [draw(pick)[:r_tgt] for _ in range(parts)]
    return current, target


@st.composite
def rebalances(draw: st.DrawFn) -> tuple[list[list[str]], list[list[str]]]:
    """Realistic plans: placement before and after a change of node count."""
    p = draw(st.integers(8, 64))
    r = draw(st.integers(2, 4))
    n1 = draw(st.integers(r, 8))
    n2 = draw(st.integers(r, 8))
    before = pl.place([pl.NodeSlot(f"n{i}") for i in range(n1)], partitions=p, replication=r)
    nodes = [pl.NodeSlot(f"n{i}") for i in range(n2)]
    after = pl.place(nodes, partitions=p, replication=r, previous=before)
    return [list(m) for m in before], [list(m) for m in after]


def check_partition(move: pm.PartitionMove, cur: list[str], tgt: list[str]) -> None:
    steps = move.steps
    low, high = min(len(cur), len(tgt)), max(len(cur), len(tgt)) + 1
    adds = [s.node_id for s in steps if s.kind is K.ADD]
    for k in range(len(steps) + 1):
        voters, fresh = pm.voters_after(cur, steps[:k])
        assert len(fresh & voters) >= pm.majority(len(voters)), (k, steps[:k])
        assert low <= len(voters) <= high  # one change at a time: never two extra, never short
    verified = 0
    removed = 0
    for i, s in enumerate(steps):
        if s.kind is K.VERIFY:
            verified += 1
            before = (K.SEED, K.ADD, K.CATCH_UP)
            assert steps[i - 3 : i] == tuple(Step(s.partition, k, s.node_id) for k in before)
        if s.kind is K.REMOVE:
            removed += 1
            # drain, verify, then delete: the replacement (or every addition) is verified first
            assert verified >= removed if removed <= len(adds) else verified == len(adds)
            assert steps[i + 1] == Step(s.partition, K.DROP, s.node_id)
            if s.node_id == cur[0]:
                assert steps[i - 1] == Step(s.partition, K.TRANSFER_LEADER, s.node_id)
    voters, fresh = pm.voters_after(cur, steps)
    assert voters == fresh == set(tgt)
    assert (steps[-1] == Step(move.partition, K.PREFER_LEADER, tgt[0])) == (tgt[0] != cur[0])


def check_plan(current: list[list[str]], target: list[list[str]]) -> pm.MigrationPlan:
    plan = pm.plan_migration(current, target)
    # Only membership and the first element matter; the order of followers is no work.
    changed = [
        p
        for p, (c, t) in enumerate(zip(current, target, strict=True))
        if set(c) != set(t) or c[0] != t[0]
    ]
    assert [m.partition for m in plan.moves] == changed
    for move in plan.moves:
        check_partition(move, current[move.partition], target[move.partition])
    assert pm.MigrationPlan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan
    return plan


@settings(max_examples=150, deadline=None)
@given(maps())
def test_every_prefix_keeps_quorum_on_arbitrary_maps(case: tuple[list[list[str]], ...]) -> None:
    check_plan(*case)


@settings(max_examples=40, deadline=None)
@given(rebalances())
def test_every_prefix_keeps_quorum_on_rebalances(case: tuple[list[list[str]], ...]) -> None:
    check_plan(*case)


def run(plan: pm.MigrationPlan, max_concurrent: int, rnd: random.Random) -> pm.PlanProgress:
    """Executor simulation: steps complete in random order; progress survives a JSON round trip."""
    progress = pm.PlanProgress()
    log: dict[int, list[Step]] = {}
    while not pm.is_done(plan, progress):
        ready = pm.next_steps(plan, progress, max_concurrent=max_concurrent)
        assert ready
        assert len({s.partition for s in ready}) == len(ready)  # one step per partition
        assert [s.partition for s in ready] == sorted(s.partition for s in ready)
        for step in rnd.sample(ready, rnd.randint(1, len(ready))):
            progress = pm.advance(progress, step, plan=plan)
            log.setdefault(step.partition, []).append(step)
        in_motion = [m for m in plan.moves if 0 < progress.steps_done(m.partition) < len(m.steps)]
        assert len(in_motion) <= max_concurrent
        progress = pm.PlanProgress.from_dict(json.loads(json.dumps(progress.to_dict())))
    assert {p: tuple(s) for p, s in log.items()} == {m.partition: m.steps for m in plan.moves}
    return progress


@settings(max_examples=60, deadline=None)
@given(maps(), st.integers(1, 4), st.randoms(use_true_random=False))
def test_replaying_next_steps_reaches_the_target(
    case: tuple[list[list[str]], ...], cap: int, rnd: random.Random
) -> None:
    current, target = case
    plan = pm.plan_migration(current, target)
    progress = run(plan, cap, rnd)
    final = [set(c) for c in current]
    for move in plan.moves:
        final[move.partition], _ = pm.voters_after(current[move.partition], move.steps)
    assert final == [set(t) for t in target]
    summary = pm.progress_summary(plan, progress)
    assert summary == pm.ProgressSummary(len(plan.moves), len(plan.moves), *(plan.total_steps,) * 2)


def test_plan_for_one_replacement() -> None:
    plan = pm.plan_migration([["a", "b", "c"], ["b", "c", "a"]], [["d", "b", "c"], ["b", "c", "a"]])
    assert plan.moves == (
        pm.PartitionMove(
            0,
            tuple(
                Step(0, k, n)
                for k, n in [
                    (K.SEED, "d"),
                    (K.ADD, "d"),
                    (K.CATCH_UP, "d"),
                    (K.VERIFY, "d"),
                    (K.TRANSFER_LEADER, "a"),
                    (K.REMOVE, "a"),
                    (K.DROP, "a"),
                    (K.PREFER_LEADER, "d"),
                ]
            ),
            ("a", "b", "c"),
            ("d", "b", "c"),
        ),
    )


def test_order_only_change_is_a_cheap_leader_move() -> None:
    plan = pm.plan_migration([["a", "b"]], [["b", "a"]])
    assert [m.steps for m in plan.moves] == [(Step(0, K.PREFER_LEADER, "b"),)]


def test_single_member_groups_are_the_documented_exception() -> None:
    """R=1: adding the second voter leaves one up-to-date voter of two until CATCH_UP."""
    plan = pm.plan_migration([["a"]], [["b"]])
    steps = plan.moves[0].steps
    voters, fresh = pm.voters_after(["a"], steps[:2])
    assert (voters, fresh) == ({"a", "b"}, {"a"})
    assert pm.voters_after(["a"], steps) == ({"b"}, {"b"})


def test_next_steps_respects_the_cap_and_continues_started_moves() -> None:
    plan = pm.plan_migration([["a", "b"]] * 3, [["a", "c"]] * 3)
    progress = pm.PlanProgress()
    assert [s.partition for s in pm.next_steps(plan, progress, max_concurrent=2)] == [0, 1]
    progress = pm.advance(progress, Step(0, K.SEED, "c"), plan=plan)
    progress = pm.advance(progress, Step(1, K.SEED, "c"), plan=plan)
    assert [s.partition for s in pm.next_steps(plan, progress, max_concurrent=1)] == [0, 1]
    assert pm.progress_summary(plan, progress) == pm.ProgressSummary(0, 3, 2, 3 * 6)
    with pytest.raises(ValueError, match="max_concurrent"):
        pm.next_steps(plan, progress, max_concurrent=0)


def test_advance_refuses_out_of_order_or_replayed_steps() -> None:
    plan = pm.plan_migration([["a", "b"]], [["a", "c"]])
    progress = pm.advance(pm.PlanProgress(), Step(0, K.SEED, "c"), plan=plan)
    with pytest.raises(ValueError, match="not the next step"):
        pm.advance(progress, Step(0, K.SEED, "c"), plan=plan)
    with pytest.raises(ValueError, match="not the next step"):
        pm.advance(progress, Step(0, K.CATCH_UP, "c"), plan=plan)
    with pytest.raises(ValueError, match="not the next step"):
        pm.advance(progress, Step(5, K.SEED, "c"), plan=plan)
    assert pm.PlanProgress.from_dict(progress.to_dict()) == progress


@pytest.mark.parametrize(
    ("current", "target", "message"),
    [
        ([["a"]], [["a"], ["b"]], "differ in size"),
        ([["a", "a"]], [["a"]], "distinct"),
        ([["a"]], [[]], "distinct"),
    ],
)
def test_bad_maps(current: list[list[str]], target: list[list[str]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        pm.plan_migration(current, target)


def test_voters_model_rejects_impossible_histories() -> None:
    with pytest.raises(ValueError, match="already a voter"):
        pm.voters_after(["a"], [Step(0, K.ADD, "a")])
    with pytest.raises(ValueError, match="without being a voter"):
        pm.voters_after(["a"], [Step(0, K.CATCH_UP, "b")])


def test_serialised_forms_are_stable() -> None:
    plan = pm.plan_migration([["a", "b"]], [["b", "c"]])
    assert plan.to_dict()["format"] == 1
    assert plan.to_dict()["moves"][0]["steps"][0] == {"kind": "seed", "node_id": "c"}
    with pytest.raises(ValueError, match="format"):
        pm.MigrationPlan.from_dict({"format": 99, "moves": []})
    assert Step.from_dict(Step(3, K.DROP, "x").to_dict()) == Step(3, K.DROP, "x")


# -- replica replacement (a dead or emptied member) -------------------------------------------


def test_replacement_removes_the_dead_member_first_and_drops_nothing() -> None:
    plan = plan_replacement([("a", "b", "c"), ("b", "c", "d")], [(0, "c", "d")])
    (move,) = plan.moves
    assert [(s.kind, s.node_id) for s in move.steps] == [
        (StepKind.REMOVE, "c"),
        (StepKind.SEED, "d"),
        (StepKind.ADD, "d"),
        (StepKind.CATCH_UP, "d"),
        (StepKind.VERIFY, "d"),
    ]
    assert move.current == ("a", "b", "c")
    assert move.target == ("a", "b", "d")
    # The live members are the whole group until the new copy caught up.
    for k in range(len(move.steps) + 1):
        voters, fresh = voters_after(move.current, move.steps[:k])
        assert {"a", "b"} <= fresh
        assert len(voters) <= 3


def test_reseed_replaces_a_member_with_a_fresh_copy_of_itself() -> None:
    plan = plan_replacement([("a", "b", "c")] * 3, [(2, "c", "c"), (0, "c", "c")])
    assert [m.partition for m in plan.moves] == [0, 2]
    move = plan.moves[0]
    assert move.current == move.target == ("a", "b", "c")
    voters, fresh = voters_after(move.current, move.steps)
    assert voters == fresh == {"a", "b", "c"}


def test_replacement_refuses_impossible_pairs() -> None:
    with pytest.raises(ValueError, match="not a replica"):
        plan_replacement([("a", "b", "c")], [(0, "x", "d")])
    with pytest.raises(ValueError, match="already holds"):
        plan_replacement([("a", "b", "c")], [(0, "c", "a")])
