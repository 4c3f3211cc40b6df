"""A member away longer than ``spec.replacement.after`` (issue 11), pure.

Away: its pod is missing, not running, or not answering, and has not been ready for longer than
``after`` (the Ready condition's last transition, or the creation of a pod that never got ready,
such as one that cannot be scheduled). Its replicas are re-placed on the members that are ready,
so every partition has its replication factor again, through the executor
(``plan_replacement``: remove the away voter, seed a new one, add, catch up, verify):

- only when capacity allows: at least RF ready members besides it, or nothing is done and the
  shortage is reported (a replica set needs RF distinct nodes);
- only when every partition it holds keeps a majority of RF other replicas ready (and is not
  reported without quorum): the group is the live voters alone until the copy is verified.
  All of its partitions or none: the resulting map leaves the away node out entirely, since a
  map listing a node that does not answer could never be installed on all of its nodes;
- ``maxConcurrent`` replicas are copied at once; one away node per plan.

Each replica goes to the ready member not yet holding that partition that holds the fewest
replicas so far (ties by ordinal). The node is left out of the map, so when it comes back the
operator sees a member to add: it first drops the stale copies the node still has
(``stale_replicas``), then rebalances to the placement over the full node set, which moves
replicas back to it.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

from kvnode.core.model import PartitionMap

from kvoperator.decide import replacement
from kvoperator.decide.actions import Action, Decision, DropStale, ReplaceReplicas
from kvoperator.decide.health import QuorumHealth
from kvoperator.model.observed import Observed
from kvoperator.model.spec import ClusterSpec
from kvoperator.model.status import Phase


def _ordinal(node_id: str) -> int:
    return int(node_id.rsplit("-", 1)[1])


def away_nodes(spec: ClusterSpec, obs: Observed, m: PartitionMap) -> list[str]:
    """Members of ``m`` away longer than ``spec.replacement.after``, by ordinal."""
    answering = {n.ordinal for n in obs.nodes if n.reachable}
    out = []
    for node in sorted(m.nodes, key=lambda n: _ordinal(n.node_id)):
        o = _ordinal(node.node_id)
        pod = obs.pod(o)
        if pod is None or pod.ready or (pod.running and o in answering):
            continue  # missing pods are recreated at once; an answering one is not away
        since = pod.unready_since
        if since is not None and obs.now - since > spec.replacement.after_s:
            out.append(node.node_id)
    return out


def replace_away(
    spec: ClusterSpec, obs: Observed, m: PartitionMap, node: str, health: QuorumHealth
) -> ReplaceReplicas | str:
    """The re-placement of ``node``'s replicas, or why it cannot happen now."""
    rf, quorum = m.replication, m.replication // 2 + 1
    mine = m.partitions_of(node)
    live = [n.node_id for n in m.nodes if n.node_id != node and obs.ready([_ordinal(n.node_id)])]
    if len(live) < rf:
        return (
            f"{node} is away but its replicas cannot be re-placed: {len(live)} ready nodes "
            f"for a replication factor of {rf}"
        )
    blocked = [
        p for p in mine if p in health.lost or sum(1 for r in m.replicas[p] if r in live) < quorum
    ]
    if blocked:
        return (
            f"{node} is away but partitions {blocked} have fewer than {quorum} other replicas "
            "ready: not re-placed (the group could not commit the change)"
        )
    load = Counter(r for reps in m.replicas for r in reps if r in live)
    pairs = []
    for p in mine:
        new = min(
            (n for n in live if n not in m.replicas[p]),
            key=lambda n: (load[n], _ordinal(n)),
        )
        load[new] += 1
        pairs.append((p, node, new))
    return ReplaceReplicas(m, tuple(pairs), spec.replacement.max_concurrent, away=(node,))


def decide_away(
    spec: ClusterSpec,
    obs: Observed,
    m: PartitionMap,
    node: str,
    health: QuorumHealth,
    *,
    waiting: Decision,
    repair: tuple[Action, ...],
) -> Decision:
    """The decision while ``node`` is away too long. ``waiting``: a not-ready decision to
    shape; ``repair``: map installs to do anyway when nothing else is."""
    plan = replace_away(spec, obs, m, node, health)
    if isinstance(plan, str):
        d = replacement.shaped(waiting, Phase.DEGRADED, "NodeAway", plan, ())
        return dataclasses.replace(d, actions=repair)
    msg = (
        f"{node} away for more than {round(spec.replacement.after_s)}s: re-placing its "
        f"{len(plan.replacements)} replicas on the other nodes ({plan.max_concurrent} at a "
        "time); they move back when it returns"
    )
    return replacement.shaped(waiting, Phase.REBALANCING, "ReplacingAwayNode", msg, (plan,))


def stale_replicas(obs: Observed, m: PartitionMap, joiners: list[int]) -> DropStale | None:
    """A joining node that still hosts replicas (its old copies from before it was away)."""
    for n in obs.nodes:
        if n.ordinal in joiners and n.reachable and n.hosted:
            return DropStale(n.ordinal, n.hosted, m)
    return None
