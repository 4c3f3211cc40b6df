"""The rebalance executor against an in-memory cluster: runs, retries, resumes, aborts."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from pathlib import Path

import pytest
from kvnode.core import placement, transition
from kvnode.core import plan as planning
from kvnode.core.model import NodeInfo, PartitionMap
from kvnode.rebalance import state as state_file
from kvnode.rebalance.executor import (
    Options,
    RebalanceFailed,
    RebalanceProgress,
    Rebalancer,
    UnfinishedRebalance,
)
from kvnode.rebalance.state import Status

from tests.unit.rebalance.fake_cluster import FakeCluster

pytestmark = pytest.mark.timeout(30)

FAST = Options(
    max_concurrent=3,
    step_timeout_s=1.0,
    seed_timeout_s=1.0,
    poll_interval_s=0.005,
    call_timeout_s=0.1,
    backoff_initial_s=0.005,
    backoff_max_s=0.05,
)
EFFECTS = {
    planning.StepKind.SEED: "seed",
    planning.StepKind.ADD: "add",
    planning.StepKind.REMOVE: "remove",
    planning.StepKind.DROP: "drop",
}


def info(node_id: str) -> NodeInfo:
    return NodeInfo(node_id, f"{node_id}.test", 8000, 9000)


def scale(before: int, after: int, *, partitions: int = 16) -> tuple[PartitionMap, PartitionMap]:
    """The map of ``before`` nodes and the placement target for ``after`` (RF 3)."""
    old = [f"n{i}" for i in range(before)]
    new = [f"n{i}" for i in range(after)]
    cur = placement.place(
        [placement.NodeSlot(n) for n in old], partitions=partitions, replication=3
    )
    tgt = placement.place(
        [placement.NodeSlot(n) for n in new], partitions=partitions, replication=3, previous=cur
    )
    base = PartitionMap.build(epoch=5, nodes=[info(n) for n in old], replicas=cur, replication=3)
    target = PartitionMap.build(epoch=0, nodes=[info(n) for n in new], replicas=tgt, replication=3)
    return base, target


def fake_for(base: PartitionMap, target: PartitionMap) -> FakeCluster:
    return FakeCluster(base, extra=[n for n in target.nodes if not base.has_node(n.node_id)])


def expected_ops(plan: planning.MigrationPlan) -> dict[int, list[tuple[str, str]]]:
    """Each partition's effective membership/data changes, in plan order, each exactly once."""
    return {
        m.partition: [(EFFECTS[s.kind], s.node_id) for s in m.steps if s.kind in EFFECTS]
        for m in plan.moves
    }


def effects(cluster: FakeCluster) -> dict[int, list[tuple[str, str]]]:
    return {p: [op for op in ops if op[0] != "lead"] for p, ops in cluster.ops.items() if ops}


def check_done(cluster: FakeCluster, base: PartitionMap, target: PartitionMap) -> PartitionMap:
    plan = planning.plan_migration(base.replicas, target.replicas)
    final = transition.map_at(base, target, plan, planning.PlanProgress(plan_done(plan)))
    assert final.epoch == base.epoch + 1 + plan.total_steps
    assert cluster.members() == [set(r) for r in target.replicas]
    assert [cluster.groups[p].leader for p in range(target.partitions)] == [
        r[0] for r in target.replicas
    ]
    for p, r in enumerate(target.replicas):
        assert cluster.holders(p) == set(r)  # leavers' copies dropped, joiners hold data
    for n in target.nodes:
        got = cluster.installed(n.node_id)
        assert (got.epoch, got.replicas, got.nodes) == (final.epoch, target.replicas, target.nodes)
    assert cluster.refused_maps == 0  # never an older map after a newer one, nor a conflict
    for node in cluster.nodes.values():
        epochs = [m.epoch for m in node.maps]
        assert epochs == sorted(set(epochs)), node.info.node_id
    assert effects(cluster) == expected_ops(plan)  # no step skipped, none repeated
    return final


def plan_done(plan: planning.MigrationPlan) -> tuple[tuple[int, int], ...]:
    return tuple((m.partition, len(m.steps)) for m in plan.moves)


@pytest.mark.parametrize(("before", "after"), [(3, 4), (5, 3)])
async def test_full_run_reaches_the_target_everywhere(
    tmp_path: Path, before: int, after: int, caplog: pytest.LogCaptureFixture
) -> None:
    base, target = scale(before, after)
    cluster = fake_for(base, target)
    seen: list[RebalanceProgress] = []
    path = str(tmp_path / "rebalance.json")
    caplog.set_level(logging.INFO, logger="kvnode.rebalance.executor")
    r = Rebalancer.create(path, base, target, admin=cluster, options=FAST, on_progress=seen.append)
    final = await r.run()
    assert final == check_done(cluster, base, target)
    state = state_file.load(path)
    assert state is not None
    assert state.status is Status.DONE
    plan = state.plan
    assert state.bytes_moved == cluster.seeded_bytes == seen[-1].bytes_moved > 0
    assert state.partition_seconds > 0
    last = seen[-1]
    assert (last.status, last.steps_done, last.steps_total) == ("done", *(plan.total_steps,) * 2)
    assert last.partitions_done == last.partitions_total == len(plan.moves)
    assert seen[0].eta_s is None
    assert last.eta_s == 0
    assert all(len(s.in_motion) <= FAST.max_concurrent for s in seen)
    assert any(s.in_motion for s in seen)
    assert [s.steps_done for s in seen] == sorted(s.steps_done for s in seen)
    step_lines = [r for r in caplog.records if " done in " in r.getMessage()]
    assert len(step_lines) == plan.total_steps


async def test_transient_errors_are_retried(tmp_path: Path) -> None:
    base, target = scale(3, 4, partitions=6)
    cluster = fake_for(base, target)
    for n in cluster.nodes:
        cluster.fail_next(n, 4)
    r = Rebalancer.create(str(tmp_path / "s.json"), base, target, admin=cluster, options=FAST)
    await r.run()
    check_done(cluster, base, target)
    assert all(v == 0 for v in cluster.failures.values())


async def test_a_joiner_that_missed_the_announce_gets_the_map_before_its_seed(
    tmp_path: Path,
) -> None:
    """A new node that did not answer the first map install (its process was still starting)
    must not stall every SEED on it: the step installs the routing map first."""
    base, target = scale(3, 4, partitions=6)
    cluster = fake_for(base, target)
    cluster.fail_next("n3", 1)  # the announce install on the joiner fails once
    r = Rebalancer.create(str(tmp_path / "s.json"), base, target, admin=cluster, options=FAST)
    await r.run()
    check_done(cluster, base, target)


async def test_a_crashed_run_resumes_without_skipping_steps(tmp_path: Path) -> None:
    base, target = scale(3, 4)
    cluster = fake_for(base, target)
    path = str(tmp_path / "s.json")
    enough = asyncio.Event()

    def watch(p: RebalanceProgress) -> None:
        if p.steps_done >= 11:
            enough.set()

    first = Rebalancer.create(path, base, target, admin=cluster, options=FAST, on_progress=watch)
    task = asyncio.create_task(first.run())
    await asyncio.wait_for(enough.wait(), 10)
    task.cancel()  # the process dies mid-plan, steps in flight
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(UnfinishedRebalance, match="unfinished"):
        Rebalancer.create(path, base, target, admin=cluster, options=FAST)
    resumed = Rebalancer.load(path, admin=cluster, options=FAST)
    assert 11 <= resumed.progress.steps_done < resumed.progress.steps_total
    await resumed.run()
    check_done(cluster, base, target)
    assert await resumed.run() == transition.map_at(
        base, target, resumed.state.plan, resumed.state.progress
    )  # done: run again is a no-op


def kill_when(cluster: FakeCluster, op: str, node_id: str) -> list[int]:
    """Kill ``node_id`` right after its first ``op``; returns [partition] once it happened."""
    hit: list[int] = []

    def on_op(p: int, what: str, n: str) -> None:
        if not hit and (what, n) == (op, node_id):
            hit.append(p)
            cluster.kill(n)

    cluster.on_op = on_op
    return hit


@pytest.mark.parametrize("comes_back", [True, False])
async def test_abort_on_a_dead_joiner_rolls_its_partitions_back(
    tmp_path: Path, comes_back: bool
) -> None:
    base, target = scale(3, 4, partitions=8)
    cluster = fake_for(base, target)
    hit = kill_when(cluster, "add", "n3")

    def revive_on_abort(p: RebalanceProgress) -> None:
        if comes_back and p.status == "aborting":
            cluster.revive("n3")

    path = str(tmp_path / "s.json")
    r = Rebalancer.create(
        path,
        base,
        target,
        admin=cluster,
        options=dataclasses.replace(FAST, step_timeout_s=0.5),
        on_progress=revive_on_abort,
    )
    with pytest.raises(RebalanceFailed) as failed:
        await r.run()
    assert failed.value.status is Status.ABORTED
    assert "n3" in failed.value.reason
    state = r.state
    p = hit[0]
    assert p in state.rolled_back
    assert cluster.members()[p] == set(base.replicas[p])
    assert cluster.ops[p][-1] == (("drop", "n3") if comes_back else ("remove", "n3"))
    assert ("n3" in cluster.holders(p)) is not comes_back
    assert state.orphans == (
        () if comes_back else tuple((q, "n3") for q in sorted(state.rolled_back))
    )
    check_aborted(cluster, state)


def check_aborted(cluster: FakeCluster, state: state_file.RebalanceState) -> None:
    """Every partition is wholly at base or at target, and the live nodes got that map."""
    final = transition.aborted_map(
        state.base, state.target, state.plan, state.progress, rolled_back=state.rolled_back
    )
    assert state.status is Status.ABORTED
    assert final.epoch == transition.aborted_epoch(state.base, state.plan)
    for p, members in enumerate(cluster.members()):
        assert members == set(final.replicas[p])
        assert members in (set(state.base.replicas[p]), set(state.target.replicas[p]))
    for n in cluster.nodes.values():
        if n.info.node_id not in cluster.dead:
            assert n.maps[-1] == final, n.info.node_id
        epochs = [m.epoch for m in n.maps]
        assert epochs == sorted(set(epochs))
    assert cluster.refused_maps == 0


async def test_digest_mismatch_aborts(tmp_path: Path) -> None:
    base, target = scale(3, 4, partitions=6)
    cluster = fake_for(base, target)
    bad: list[int] = []

    def corrupt_first_seed(p: int, what: str, n: str) -> None:
        if what == "seed" and not bad:
            bad.append(p)
            cluster.corrupt(n, p)

    cluster.on_op = corrupt_first_seed
    r = Rebalancer.create(str(tmp_path / "s.json"), base, target, admin=cluster, options=FAST)
    with pytest.raises(RebalanceFailed, match="divergence") as failed:
        await r.run()
    assert failed.value.status is Status.ABORTED
    assert failed.value.progress.status == "aborted"
    assert bad[0] in r.state.rolled_back
    assert "verify" in (r.state.failure or "")
    assert cluster.holders(bad[0]) == set(base.replicas[bad[0]])  # the bad copy is gone
    check_aborted(cluster, r.state)


async def test_an_interrupted_abort_resumes_from_the_state_file(tmp_path: Path) -> None:
    base, target = scale(5, 3)
    cluster = fake_for(base, target)
    path = str(tmp_path / "s.json")
    first = Rebalancer.create(path, base, target, admin=cluster, options=FAST)
    behind = first.state.plan.moves[1].partition
    cluster.hold("add", behind)  # this move stays before its ADD: it will roll back
    aborts: list[asyncio.Task[PartitionMap]] = []
    mid_abort = asyncio.Event()

    def on_op(p: int, what: str, n: str) -> None:
        if what == "remove" and not aborts:  # this move will roll forward
            cluster.answer_delay_s = 0.05
            aborts.append(asyncio.ensure_future(first.abort("operator asked")))
        elif first.state.status is Status.ABORTING:
            mid_abort.set()

    cluster.on_op = on_op
    running = asyncio.create_task(first.run())
    await asyncio.wait_for(mid_abort.wait(), 10)
    aborts[0].cancel()  # the process dies in the middle of the abort
    for t in (aborts[0], running):
        with pytest.raises((asyncio.CancelledError, RebalanceFailed)):
            await t
    saved = state_file.load(path)
    assert saved is not None
    assert saved.status is Status.ABORTING
    assert saved.abort_reason == "operator asked"
    assert behind in saved.rolled_back
    assert {m.partition for m in saved.in_motion()} - saved.rolled_back  # some roll forward
    resumed = Rebalancer.load(path, admin=cluster, options=FAST)
    with pytest.raises(RebalanceFailed, match="operator asked") as failed:
        await resumed.run()
    assert failed.value.status is Status.ABORTED
    check_aborted(cluster, resumed.state)
    assert cluster.holders(behind) == set(base.replicas[behind])  # the joiner's copy is gone
    assert await resumed.abort("again") == transition.aborted_map(
        base, target, saved.plan, resumed.state.progress, rolled_back=saved.rolled_back
    )


def test_state_file_refuses_unknown_or_corrupt_content(tmp_path: Path) -> None:
    base, target = scale(3, 4, partitions=4)
    path = tmp_path / "s.json"
    r = Rebalancer.create(str(path), base, target, admin=fake_for(base, target), options=FAST)
    loaded = state_file.load(str(path))
    assert loaded == r.state
    assert not list(tmp_path.glob("*.tmp"))
    text = path.read_text()
    for bad, message in [
        ("{", "unreadable"),
        ("[]", "not a JSON object"),
        (text.replace('"format": 1', '"format": 9'), "format"),
        (text.replace('"status": "running"', '"status": "dancing"'), "dancing"),
    ]:
        path.write_text(bad)
        with pytest.raises(ValueError, match=message):
            state_file.load(str(path))
    assert state_file.load(str(tmp_path / "absent.json")) is None


async def test_a_remove_in_flight_when_the_abort_starts_rolls_forward(tmp_path: Path) -> None:
    """The member may already have left although the REMOVE step is not recorded: undoing it
    would need the old member back, so the abort finishes that move instead."""
    base, target = scale(5, 3, partitions=4)
    cluster = fake_for(base, target)
    r = Rebalancer.create(str(tmp_path / "s.json"), base, target, admin=cluster, options=FAST)
    aborts: list[asyncio.Task[PartitionMap]] = []
    removed: list[int] = []

    def on_op(p: int, what: str, n: str) -> None:
        if what == "remove" and not aborts:
            removed.append(p)
            cluster.answer_delay_s = 0.05  # the answer is slow: the abort starts meanwhile
            aborts.append(asyncio.ensure_future(r.abort("operator asked")))

    cluster.on_op = on_op
    with pytest.raises(RebalanceFailed, match="operator asked"):
        await r.run()
    await aborts[0]
    p = removed[0]
    assert p not in r.state.rolled_back
    assert cluster.members()[p] == set(target.replicas[p])
    plan = r.state.plan
    assert effects(cluster)[p] == expected_ops(plan)[p]
    check_aborted(cluster, r.state)


async def test_a_replacement_plan_reseeds_a_wiped_member_in_place(tmp_path: Path) -> None:
    """A member whose volume lost its data (still a voter in its groups, hosting nothing) is
    removed, seeded afresh, added back, caught up and verified; the final map is the map it
    started from, at a higher epoch; nothing is dropped, and it is never a leader meanwhile."""
    base, _ = scale(3, 3, partitions=4)
    cluster = FakeCluster(base)
    cluster.housekeeping = True
    wiped = cluster.nodes["n2"]
    wiped.data.clear()
    wiped.applied.clear()
    for g in cluster.groups.values():
        if g.leader == "n2":  # it lost its leaderships when it went away
            g.leader = next(v for v in g.voters if v != "n2")
    pairs = [(p, "n2", "n2") for p in range(4)]
    plan = planning.plan_replacement(base.replicas, pairs)
    options = dataclasses.replace(FAST, max_concurrent=2)
    rb = Rebalancer.create(str(tmp_path / "s.json"), base, base, admin=cluster, options=options,
                           plan=plan)  # fmt: skip
    final = await rb.run()
    assert final.replicas == base.replicas
    assert final.epoch == transition.final_epoch(base, plan)
    for p in range(4):
        assert [op for op in cluster.ops[p] if op[0] != "lead"] == [
            ("remove", "n2"),
            ("seed", "n2"),
            ("add", "n2"),
        ]
        assert sorted(cluster.groups[p].voters) == ["n0", "n1", "n2"]
        assert wiped.data[p] == cluster.nodes["n0"].data[p]
        assert (p, "n2") in cluster.digested
    # Leadership reached n2 only after its copy was verified.
    assert all(verified for _, to, verified in cluster.handoffs if to == "n2")
