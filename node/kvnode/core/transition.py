"""Routing maps during a migration: what the cluster's map says after each completed step.

A live rebalance installs a new ``PartitionMap`` after every step so that clients and nodes
route by the ACTUAL Raft membership, never by an intention. ``map_at`` computes that map as a
pure function of (base, target, plan, progress), which is what makes an executor resumable: after
a crash it recomputes the map from the persisted progress, and re-installing it is a no-op.

What must stay true (property-tested along arbitrary execution orders of generated plans):

* epochs strictly grow with progress: ``base.epoch + 1 + steps done`` (the map announced before
  any step is ``base.epoch + 1``; the final one is ``final_epoch``), and an aborted run's last map
  (``aborted_map``) gets ``aborted_epoch``, above every map a run can install;
* ``replicas[p]`` holds exactly the voters of ``voters_after`` and element 0 (the preferred leader,
  which node housekeeping hands leadership to) is always a trusted voter (``trusted_voters``: an
  original member, or a joiner whose VERIFY is done, never one only caught up), preferably one
  that stays, from a move's first step on; once a partition's steps are all done it is in the
  target's order, and the final map's replicas are exactly the target's (partitions outside the
  plan keep the base order until then: the plan skips follower-order-only changes);
* nodes are the union of both maps' nodes until the plan is done (a leaving node is still
  reachable and a joining one already is), then exactly the target's nodes.
"""

from __future__ import annotations

from kvnode.core import plan as planning
from kvnode.core.model import NodeInfo, PartitionMap


def announce_epoch(base: PartitionMap) -> int:
    """Epoch of the map installed before the first step (no membership changed yet)."""
    return base.epoch + 1


def final_epoch(base: PartitionMap, plan: planning.MigrationPlan) -> int:
    """Epoch of the map once every step is done: one per step above the announce map."""
    return announce_epoch(base) + plan.total_steps


def aborted_epoch(base: PartitionMap, plan: planning.MigrationPlan) -> int:
    """Epoch of an aborted run's last map: above every epoch ``map_at`` can produce."""
    return final_epoch(base, plan) + 1


def map_at(
    base: PartitionMap,
    target: PartitionMap,
    plan: planning.MigrationPlan,
    progress: planning.PlanProgress,
    *,
    rolled_back: frozenset[int] = frozenset(),
) -> PartitionMap:
    """The routing map stating the Raft membership after ``progress``.

    ``rolled_back`` partitions (an abort undid their partial move) are back at ``base``; a map with
    any of them is an aborted run's map and gets ``aborted_epoch``.
    """
    if base.partitions != target.partitions:
        raise ValueError(
            f"maps differ in size: {base.partitions} vs {target.partitions} partitions"
        )
    done = planning.is_done(plan, progress) and not rolled_back
    steps_done = planning.progress_summary(plan, progress).steps_done
    epoch = aborted_epoch(base, plan) if rolled_back else announce_epoch(base) + steps_done
    replicas = (
        target.replicas
        if done
        else tuple(
            base.replicas[p]
            if p in rolled_back
            else _members_at(base.replicas[p], target.replicas[p], plan.move(p), progress)
            for p in range(base.partitions)
        )
    )
    return PartitionMap(
        epoch=epoch,
        partitions=base.partitions,
        replication=target.replication,
        nodes=target.nodes if done else union_nodes(base, target),
        replicas=replicas,
    )


def aborted_map(
    base: PartitionMap,
    target: PartitionMap,
    plan: planning.MigrationPlan,
    progress: planning.PlanProgress,
    *,
    rolled_back: frozenset[int],
) -> PartitionMap:
    """``map_at`` with ``aborted_epoch`` even when nothing was rolled back (all rolled forward)."""
    pmap = map_at(base, target, plan, progress, rolled_back=rolled_back)
    return PartitionMap(
        epoch=aborted_epoch(base, plan),
        partitions=pmap.partitions,
        replication=pmap.replication,
        nodes=pmap.nodes,
        replicas=pmap.replicas,
    )


def trusted_voters(
    current: tuple[str, ...], steps_done: tuple[planning.Step, ...]
) -> frozenset[str]:
    """Voters that may lead: the original members still voting, and joiners whose VERIFY is done.

    A joiner that caught up but is not verified yet must not be preferred: housekeeping would
    hand it leadership, and a copy nobody has checked would then be the one others are checked
    against (the 3 -> 5 abort of issue 8: the joiner led its own VERIFY).
    """
    voters, fresh = planning.voters_after(current, steps_done)
    verified = {s.node_id for s in steps_done if s.kind is planning.StepKind.VERIFY}
    # A member removed and added back (a reseed) is a fresh copy, not an original one.
    removed = {s.node_id for s in steps_done if s.kind is planning.StepKind.REMOVE}
    original = set(current) - removed
    return frozenset(n for n in voters & fresh if n in original or n in verified)


def _members_at(
    current: tuple[str, ...],
    target: tuple[str, ...],
    move: planning.PartitionMove | None,
    progress: planning.PlanProgress,
) -> tuple[str, ...]:
    """Voters after the move's completed steps: trusted ones (``trusted_voters``) first, staying
    ones before leaving ones, each in target order."""
    if move is None:
        return current
    k = min(progress.steps_done(move.partition), len(move.steps))
    if k == 0:
        return current
    voters, _ = planning.voters_after(current, move.steps[:k])
    trusted = trusted_voters(current, move.steps[:k])

    def key(n: str) -> tuple[bool, bool, int]:
        return (
            n not in trusted,
            n not in target,
            target.index(n) if n in target else current.index(n),
        )

    return tuple(sorted(voters, key=key))


def union_nodes(base: PartitionMap, target: PartitionMap) -> tuple[NodeInfo, ...]:
    """Nodes of both maps by id, sorted by id; the target's ``NodeInfo`` wins on a clash."""
    by_id = {n.node_id: n for n in base.nodes}
    by_id.update((n.node_id, n) for n in target.nodes)
    return tuple(by_id[i] for i in sorted(by_id))
