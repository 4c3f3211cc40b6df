"""The preferred-leader hand-off rule: only to a connected voter of a map that states the Raft
membership (during a move, ``map_at`` puts a joiner first only once it is verified)."""

from __future__ import annotations

from kvnode.core import plan as pm
from kvnode.core import transition as tr
from kvnode.core.model import PartitionMap
from kvnode.raft.groups import ReplicaStatus
from kvnode.service.housekeeping import handoff_target

from tests.unit.service.fakes import addr, info


def status(
    me: str, members: list[str], *, role: str = "leader", connected: list[str] | None = None
) -> ReplicaStatus:
    addrs = tuple(sorted(addr(n, 0) for n in members))
    return ReplicaStatus(
        partition=0,
        self_addr=addr(me, 0),
        role=role,
        leader_addr=addr(me, 0) if role == "leader" else None,
        term=2,
        commit_index=10,
        last_applied=10,
        leader_commit_index=10,
        store_applied=10,
        members=addrs,
        connected=tuple(a for a in addrs if a != addr(me, 0))
        if connected is None
        else tuple(addr(n, 0) for n in connected),
        has_quorum=True,
        log_len=3,
        updated_monotonic=0.0,
    )


def one(replicas: list[str], *, nodes: list[str] | None = None, epoch: int = 1) -> PartitionMap:
    ids = nodes or sorted(replicas)
    return PartitionMap.build(
        epoch=epoch, nodes=[info(n) for n in ids], replicas=[replicas], replication=len(replicas)
    )


def test_hands_off_to_the_preferred_connected_voter() -> None:
    pmap = one(["b", "a", "c"])
    assert handoff_target(pmap, "a", 0, status("a", ["a", "b", "c"])) == ("b", addr("b", 0))


def test_no_hand_off_when_not_leading_or_already_preferred() -> None:
    pmap = one(["a", "b", "c"])
    assert handoff_target(pmap, "a", 0, status("a", ["a", "b", "c"])) is None
    assert (
        handoff_target(one(["b", "a", "c"]), "a", 0, status("a", ["a", "b", "c"], role="follower"))
        is None
    )
    assert handoff_target(pmap, "a", 0, None) is None


def test_no_hand_off_to_a_disconnected_replica() -> None:
    pmap = one(["b", "a", "c"])
    assert handoff_target(pmap, "a", 0, status("a", ["a", "b", "c"], connected=["c"])) is None


def test_no_hand_off_while_the_map_lags_the_raft_membership() -> None:
    # Raft already has d as a voter, the map does not say so yet (or the reverse): wait.
    pmap = one(["b", "a", "c"], nodes=["a", "b", "c", "d"])
    assert handoff_target(pmap, "a", 0, status("a", ["a", "b", "c", "d"])) is None
    assert handoff_target(one(["b", "a", "c", "d"]), "a", 0, status("a", ["a", "b", "c"])) is None


def test_a_caught_up_joiner_is_not_handed_the_lead_before_its_verify() -> None:
    base = one(["a", "b", "c"], epoch=3)
    target = one(["d", "b", "c"], nodes=["b", "c", "d"])
    plan = pm.plan_migration(base.replicas, target.replicas)
    steps = plan.moves[0].steps
    kinds = [s.kind for s in steps]
    raft = status("a", ["a", "b", "c", "d"])  # a leads; d is a voter and caught up
    for done in range(kinds.index(pm.StepKind.CATCH_UP) + 1, kinds.index(pm.StepKind.VERIFY) + 1):
        progress = pm.PlanProgress(((0, done),))
        pmap = tr.map_at(base, target, plan, progress)
        got = handoff_target(pmap, "a", 0, raft)
        verified = pm.StepKind.VERIFY in kinds[:done]
        assert (got is not None and got[0] == "d") is verified, (kinds[:done], got)
