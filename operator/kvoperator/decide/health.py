"""Quorum health of every partition, from what the nodes answered: pure, so it is table-tested.

A partition has lost its quorum when fewer than RF//2+1 of its replicas answer the operator, or
when none of its answering replicas knows a leader for it (only the replicas' own Raft state
counts: another node's leader hint may be stale). Reported, never papered over: the
``QuorumLost`` condition names the partitions, and the cluster is not called Ready meanwhile.
Partitions that keep their quorum keep serving; the report says which ones do not.
"""

from __future__ import annotations

from dataclasses import dataclass

from kvnode.core.model import PartitionMap

from kvoperator.model.observed import NodeReport
from kvoperator.model.status import Condition

MAX_NAMED = 20  # partitions named in the condition message (the metric counts them all)


@dataclass(frozen=True, slots=True)
class QuorumHealth:
    lost: tuple[int, ...]  # partitions without a quorum of answering replicas or a leader
    known: bool = True  # False: no map yet, nothing to judge

    def condition(self) -> Condition:
        if not self.known:
            return Condition("QuorumLost", False, "NoMap", "no partition map installed yet")
        if not self.lost:
            return Condition("QuorumLost", False, "AllPartitionsHaveQuorum")
        return Condition("QuorumLost", True, "QuorumLost", self.message)

    @property
    def message(self) -> str:
        named = ", ".join(str(p) for p in self.lost[:MAX_NAMED])
        more = f" (+{len(self.lost) - MAX_NAMED} more)" if len(self.lost) > MAX_NAMED else ""
        return f"partitions without a quorum or a leader: {named}{more}"


def _ordinal(node_id: str) -> int:
    return int(node_id.rsplit("-", 1)[1])


def quorum_health(pmap: PartitionMap | None, nodes: tuple[NodeReport, ...]) -> QuorumHealth:
    """Which partitions of ``pmap`` have lost their quorum, judged from ``nodes``' answers."""
    if pmap is None:
        return QuorumHealth(lost=(), known=False)
    answering = {n.ordinal: n for n in nodes if n.reachable}
    quorum = pmap.replication // 2 + 1
    lost = []
    for p, replicas in enumerate(pmap.replicas):
        # A node that answers without its replica (a lost volume: no map, or needing a
        # reseed of p) is no voter of p in practice.
        up = [
            n
            for o in (_ordinal(r) for r in replicas)
            if (n := answering.get(o)) is not None
            and n.epoch is not None
            and p not in n.needs_reseed
        ]
        if len(up) < quorum:
            lost.append(p)
            continue
        told = [n.leaders for n in up if n.leaders is not None]
        if told and not any(p < len(t) and t[p] in replicas for t in told):
            lost.append(p)
    return QuorumHealth(lost=tuple(lost))
