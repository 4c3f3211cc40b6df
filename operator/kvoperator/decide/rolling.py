"""The operator-driven rolling upgrade (StatefulSet ``updateStrategy: OnDelete``), pure.

The StatefulSet never replaces a pod by itself; the operator does, one at a time, and only from
a converged cluster (every node ready, every partition with a quorum and a leader, no
rebalance): so at most one replica of any partition is ever down for an upgrade. Order:
followers first, the node holding the most leaderships last (fewest leaderships first, then
ordinal), and the leaderships of the pod about to go are moved to a ready replica first, so
clients see no leader loss. The next pod waits until the previous one is back and ready,
which the converged-cluster gate gives for free. A recreated pod that is still not ready after
``STUCK_AFTER_S`` stops the roll and is reported (``Degraded/RollingUpdateStuck``).
"""

from __future__ import annotations

from collections import Counter

from kvnode.core.model import PartitionMap

from kvoperator.decide.actions import RollPod
from kvoperator.model.observed import Observed

STUCK_AFTER_S = 300.0


def _ordinal(node_id: str) -> int:
    return int(node_id.rsplit("-", 1)[1])


def outdated(obs: Observed, members: list[int]) -> list[int]:
    """Members whose pod was made from an older template than the StatefulSet's."""
    if obs.update_revision is None:
        return []
    return [
        o
        for o in members
        if (p := obs.pod(o)) is not None
        and p.revision is not None
        and p.revision != obs.update_revision
    ]


def starting(obs: Observed, not_ready: list[int]) -> tuple[list[int], list[int]]:
    """Split not-ready members made from the new template into (still starting, stuck)."""
    young: list[int] = []
    stuck: list[int] = []
    for o in not_ready:
        p = obs.pod(o)
        if p is None or obs.update_revision is None or p.revision != obs.update_revision:
            continue
        age = None if p.created is None else obs.now - p.created
        (stuck if age is not None and age > STUCK_AFTER_S else young).append(o)
    return young, stuck


def leaderships(obs: Observed, m: PartitionMap) -> dict[int, str]:
    """partition -> leader node, as the replicas themselves report it."""
    out: dict[int, str] = {}
    for n in obs.nodes:
        if not n.reachable or n.leaders is None:
            continue
        for p, leader in enumerate(n.leaders[: m.partitions]):
            if leader is not None and leader in m.replicas[p]:
                out[p] = leader
    return out


def next_roll(obs: Observed, m: PartitionMap, candidates: list[int]) -> RollPod:
    """The pod to roll next among ``candidates`` (non-empty), with its leadership moves."""
    leaders = leaderships(obs, m)
    led = Counter(_ordinal(v) for v in leaders.values())
    victim = min(candidates, key=lambda o: (led.get(o, 0), o))
    transfers = []
    for p, leader in sorted(leaders.items()):
        if _ordinal(leader) != victim:
            continue
        others = [r for r in m.replicas[p] if _ordinal(r) != victim and obs.ready([_ordinal(r)])]
        if others:
            to = min(others, key=lambda r: (led.get(_ordinal(r), 0), r))
            led[_ordinal(to)] += 1
            transfers.append((p, to))
    return RollPod(victim, tuple(transfers))
