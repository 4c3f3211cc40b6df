"""How quorum health and a rebalance's progress shape a decision (split from ``policy`` to keep
it readable)."""

from __future__ import annotations

import dataclasses

from kvoperator.decide.actions import Decision, RollPod
from kvoperator.decide.health import QuorumHealth
from kvoperator.model.observed import RebalanceView
from kvoperator.model.status import Condition, Phase, RebalanceProgress


def rebalance_progress(rb: RebalanceView) -> RebalanceProgress:
    return RebalanceProgress(
        from_replicas=len(rb.base.nodes),
        to_replicas=rb.target_size,
        partitions_done=rb.partitions_done,
        partitions_total=rb.partitions_total,
        steps_done=rb.steps_done,
        steps_total=rb.steps_total,
        bytes_moved=rb.bytes_moved,
        eta_seconds=rb.eta_s,
    )


def report_quorum(d: Decision, health: QuorumHealth) -> Decision:
    """Never papered over: a cluster with partitions below quorum is not Ready, and is Degraded
    unless something more specific already explains it. No rolling-upgrade step is taken (it
    would take a replica down); other actions stand: the partitions that keep their quorum
    keep serving, and a running rebalance is the executor's to judge."""
    d = dataclasses.replace(d, quorum=health)
    if not health.lost:
        return d
    # Never take a replica down for an upgrade while any partition is below quorum.
    d = dataclasses.replace(d, actions=tuple(a for a in d.actions if not isinstance(a, RollPod)))
    # (An undrain stands: it takes nothing down, and a drained node is a leader less.)
    msg = health.message
    if d.phase is Phase.READY:
        return dataclasses.replace(
            d,
            phase=Phase.DEGRADED,
            message=msg,
            ready=Condition("Ready", False, "QuorumLost", msg),
            degraded=Condition("Degraded", True, "QuorumLost", msg),
        )
    if d.degraded is None:
        return dataclasses.replace(d, degraded=Condition("Degraded", True, "QuorumLost", msg))
    return d
