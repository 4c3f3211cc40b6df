"""The operator-driven rolling upgrade (StatefulSet ``updateStrategy: OnDelete``), pure.

The StatefulSet never replaces a pod by itself; the operator does, one at a time, and only from
a converged cluster (every node ready, every partition with a quorum and a leader, no
rebalance): so at most one replica of any partition is ever down for an upgrade. Order:
followers first, the node holding the most leaderships last (fewest leaderships first, then
ordinal). The pod about to go is drained first (the node-level maintenance drain: every
leadership handed away and kept away by the nodes' housekeeping), and deleted only once it
leads nothing, so clients meet no leader loss; the drain flag lives on its volume, marked by
the operator, and the recreated pod is undrained once it is ready and every replica it hosts
has caught up. The next pod waits until then (the converged-cluster gate and the mark). A
recreated pod that is still not ready after ``STUCK_AFTER_S`` stops the roll and is reported
(``Degraded/RollingUpdateStuck``).
"""

from __future__ import annotations

from collections import Counter

from kvnode.core.model import PartitionMap

from kvoperator.decide.actions import RollPod, UndrainNode
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


def _name(m: PartitionMap, ordinal: int) -> str:
    return next(n.node_id for n in m.nodes if _ordinal(n.node_id) == ordinal)


def roll_marked(obs: Observed, members: list[int]) -> list[int]:
    """Members whose node a roll drained and has not undrained yet (the mark on the volume)."""
    return [o for o in members if (v := obs.pvc(o)) is not None and v.roll_drained]


def victim(obs: Observed, m: PartitionMap, candidates: list[int]) -> int:
    """The pod to roll next among ``candidates`` (non-empty): fewest leaderships, then ordinal,
    so the node holding the most leaderships goes last."""
    led = Counter(_ordinal(v) for v in leaderships(obs, m).values())
    return min(candidates, key=lambda o: (led.get(o, 0), o))


def step(
    obs: Observed, m: PartitionMap, members: list[int], stale: list[int]
) -> tuple[RollPod | UndrainNode, str] | None:
    """The roll's next action from a cluster whose members are all ready, with its message;
    None when there is nothing to roll. A drained pod is finished first: still on the old
    template (the operator stopped between the drain and the delete), it is drained and
    deleted again; on the new one and ready, it is undrained once caught up. Only then does
    the next pod go."""
    assert obs.update_revision is not None or not stale
    more = f"({len(stale)} more to roll)"
    for o in roll_marked(obs, members):
        if o in stale:
            more = f"({len(stale) - 1} more to roll)"
            if drained_and_leaderless(obs, m, o):
                msg = f"rolling update: replacing {_name(m, o)}, drained {more}"
                return RollPod(o, str(obs.update_revision), delete=True), msg
            msg = f"rolling update: draining {_name(m, o)} {more}"
            return RollPod(o, str(obs.update_revision)), msg
        msg = f"rolling update: undraining {_name(m, o)} once it caught up {more}"
        return UndrainNode(o, m), msg
    if not stale:
        return None
    o = victim(obs, m, stale)
    msg = f"rolling update: draining {_name(m, o)} ({len(stale) - 1} more to roll)"
    return RollPod(o, str(obs.update_revision)), msg


def drained_and_leaderless(obs: Observed, m: PartitionMap, ordinal: int) -> bool:
    """The node says it is drained and no replica names it as its partition's leader."""
    report = next((n for n in obs.nodes if n.ordinal == ordinal and n.reachable), None)
    if report is None or report.drained is not True:
        return False
    return all(_ordinal(v) != ordinal for v in leaderships(obs, m).values())
