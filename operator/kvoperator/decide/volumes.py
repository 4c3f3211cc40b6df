"""Volumes of ordinals outside the map (pure, split from ``policy``): a retained volume must not
come back under a scale-up (stale data), and the reclaim policy applies to removed ordinals'
volumes once their pods are gone."""

from __future__ import annotations

from kvnode.core.model import PartitionMap

from kvoperator.decide.actions import Action, ReclaimVolumes
from kvoperator.model.observed import Observed
from kvoperator.model.spec import ClusterSpec, ReclaimPolicy


def _members(pmap: PartitionMap) -> set[int]:
    return {int(n.node_id.rsplit("-", 1)[1]) for n in pmap.nodes}


def retired_joiners(spec: ClusterSpec, obs: Observed, m: PartitionMap) -> list[str]:
    """Retained volumes (stale data) of ordinals a scale-up would bring back."""
    members = _members(m)
    return [
        p.name
        for p in obs.pvcs
        if p.retired and p.ordinal < spec.replicas and p.ordinal not in members
    ]


def reclaim(spec: ClusterSpec, obs: Observed, m: PartitionMap) -> tuple[Action, ...]:
    """Volumes of ordinals the map no longer uses, once their pods are gone."""
    policy = spec.storage.reclaim_policy
    pvcs = tuple(
        p.name
        for p in obs.pvcs
        if p.ordinal >= spec.replicas
        and obs.pod(p.ordinal) is None
        and (policy is ReclaimPolicy.DELETE or not p.retired)
    )
    return (ReclaimVolumes(pvcs, policy, m.epoch),) if pvcs else ()
