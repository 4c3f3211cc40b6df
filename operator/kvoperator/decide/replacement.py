"""Automatic replica replacement (issue 11), pure: which replicas to reseed, and when not to.

A node whose volume lost its data (an emptied or replaced PVC) must never rejoin its groups as
an existing voter (``kvnode.service.identity``): it opens none of those replicas and reports them
as needing a reseed. Two ways the operator sees it, once the cluster is bootstrapped:

- a member of the map answers WITHOUT a map: its volume is empty (a node never loses its map
  otherwise). Every partition the map gives it is lost. The executor's first map (the announce,
  epoch above every earlier one) makes the node mark them itself;
- a member answers with a map and ``/readyz`` names partitions needing a reseed.

Each lost replica is replaced by a fresh copy of itself through the executor
(``kvnode.core.plan.plan_replacement``: remove the old voter, seed, add, catch up, verify), and
only while the partition's other replicas can carry the group alone: at least a majority of
the replication factor of them ready (their pods pass ``/readyz``: a map, a leader for every
partition they host), and the partition not reported without quorum. Otherwise the replacement
would start on a group that cannot commit a membership change, or leave it on fewer up-to-date
voters than a quorum while the copy catches up: it is reported (``Degraded/ReplicasLost``) and
retried on a later pass. ``spec.replacement.maxConcurrent`` caps the replicas in motion.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from kvnode.core.model import PartitionMap

from kvoperator.decide.actions import Decision, ReplaceReplicas
from kvoperator.decide.health import QuorumHealth
from kvoperator.model.observed import Observed
from kvoperator.model.spec import ClusterSpec
from kvoperator.model.status import Condition, Phase

MAX_NAMED = 8  # blocked replicas named in the message


def _ordinal(node_id: str) -> int:
    return int(node_id.rsplit("-", 1)[1])


def lost_replicas(obs: Observed, m: PartitionMap) -> dict[str, tuple[int, ...]]:
    """node id -> partitions of ``m`` its volume lost (call only once bootstrapped)."""
    out: dict[str, tuple[int, ...]] = {}
    for n in obs.nodes:
        node_id = next((x.node_id for x in m.nodes if _ordinal(x.node_id) == n.ordinal), None)
        if not n.reachable or node_id is None:
            continue
        mine = m.partitions_of(node_id)
        lost = mine if n.epoch is None else tuple(p for p in n.needs_reseed if p in mine)
        if lost:
            out[node_id] = tuple(sorted(lost))
    return out


@dataclass(frozen=True, slots=True)
class Verdict:
    start: tuple[tuple[int, str, str], ...]  # (partition, old, new) that may start now
    blocked: tuple[str, ...]  # why the others may not, one line each


def judge(
    obs: Observed, m: PartitionMap, lost: dict[str, tuple[int, ...]], health: QuorumHealth
) -> Verdict:
    """Which lost replicas may be replaced now (see the module docstring)."""
    quorum = m.replication // 2 + 1
    gone = {(p, node) for node, parts in lost.items() for p in parts}
    start, blocked = [], []
    for node, parts in sorted(lost.items()):
        for p in parts:
            others = [r for r in m.replicas[p] if r != node]
            healthy = [r for r in others if (p, r) not in gone and obs.ready([_ordinal(r)])]
            if p in health.lost or len(healthy) < quorum:
                blocked.append(
                    f"partition {p} on {node}: {len(healthy)} of its other replicas ready, "
                    f"{quorum} needed to replace it safely"
                )
            else:
                start.append((p, node, node))
    return Verdict(tuple(start), tuple(blocked))


def decide_reseed(
    spec: ClusterSpec,
    obs: Observed,
    m: PartitionMap,
    lost: dict[str, tuple[int, ...]],
    health: QuorumHealth,
    *,
    waiting: Decision,
    retry_after_s: float,
) -> Decision:
    """The decision while members lost replicas. ``waiting``: a not-ready decision to shape."""
    total = sum(len(v) for v in lost.values())
    who = ", ".join(f"{n} ({len(v)})" for n, v in sorted(lost.items()))
    verdict = judge(obs, m, lost, health)
    rb = obs.rebalance
    cooling = rb is not None and rb.status == "aborted" and obs.now - rb.updated_at < retry_after_s
    if verdict.start and not cooling:
        msg = (
            f"reseeding {len(verdict.start)} of {total} lost replicas on {who} "
            f"({spec.replacement.max_concurrent} at a time)"
        )
        action = ReplaceReplicas(m, verdict.start, spec.replacement.max_concurrent)
        return shaped(waiting, Phase.REBALANCING, "ReplacingReplicas", msg, (action,))
    msg = f"{total} replicas lost with their volume on {who}, not replaced yet"
    if cooling:
        assert rb is not None
        msg += f": the last replacement was aborted ({rb.failure or 'no reason recorded'})"
    if verdict.blocked:
        more = len(verdict.blocked) - MAX_NAMED
        named = "; ".join(verdict.blocked[:MAX_NAMED]) + (f" (+{more} more)" if more > 0 else "")
        msg += f": {named}"
    return shaped(waiting, Phase.DEGRADED, "ReplicasLost", msg, ())


def shaped(
    d: Decision, phase: Phase, reason: str, msg: str, actions: tuple[ReplaceReplicas, ...]
) -> Decision:
    """``d`` (a not-ready decision) with this phase, reason, message and actions; Degraded."""
    return dataclasses.replace(
        d,
        actions=actions,
        phase=phase,
        message=msg,
        ready=Condition("Ready", False, reason, msg),
        progressing=Condition("Progressing", bool(actions), reason, msg),
        degraded=Condition("Degraded", True, reason, msg),
    )
