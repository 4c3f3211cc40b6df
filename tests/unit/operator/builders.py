"""Builders of observed clusters for the decide() table and the reconciler tests."""

from __future__ import annotations

from kvnode.core.model import PartitionMap
from kvnode.core.placement import NodeSlot, place
from kvoperator.model.names import ClusterNames
from kvoperator.model.observed import NodeReport, Observed, PodView, PvcView, RebalanceView
from kvoperator.model.spec import ClusterSpec, parse_spec

NAMES = ClusterNames("demo", "ns")
NOW = 1_000_000.0


def spec(**fields: object) -> ClusterSpec:
    return parse_spec(fields, default_image="ringkv:test")


def cluster_map(ordinals: range | list[int], *, epoch: int = 1, partitions: int = 16,
                previous: PartitionMap | None = None) -> PartitionMap:  # fmt: skip
    nodes = [NAMES.node(o) for o in ordinals]
    replicas = place(
        [NodeSlot(n.node_id) for n in nodes],
        partitions=partitions,
        replication=3,
        previous=None if previous is None else previous.replicas,
    )
    return PartitionMap.build(epoch=epoch, nodes=nodes, replicas=replicas, replication=3)


def observed(
    *,
    sts: int | None,
    running: range | list[int] = (),  # type: ignore[assignment]
    ready: range | list[int] = (),  # type: ignore[assignment]
    pmap: PartitionMap | None = None,
    epochs: dict[int, int | None] | None = None,
    pvcs: list[int] | None = None,
    retired: list[int] | None = None,
    rebalance: RebalanceView | None = None,
    now: float = NOW,
    bootstrapped: bool = False,
) -> Observed:
    """Pods ``running`` (and ``ready``); each running node reports ``pmap``'s epoch unless
    ``epochs`` says otherwise; PVCs for ``pvcs`` (default: every running pod)."""
    pods = tuple(
        PodView(o, NAMES.pod(o), running=True, ready=o in ready) for o in sorted(set(running))
    )
    reports = []
    for o in sorted(set(running)):
        e = (epochs or {}).get(o, None if pmap is None else pmap.epoch)
        reports.append(NodeReport(o, reachable=True, epoch=e))
    claims = sorted(set(running) if pvcs is None else set(pvcs))
    return Observed(
        generation=1,
        now=now,
        statefulset_replicas=sts,
        pods=pods,
        pvcs=tuple(PvcView(o, NAMES.pvc(o), retired=o in (retired or [])) for o in claims),
        nodes=tuple(reports),
        cluster_map=pmap,
        rebalance=rebalance,
        bootstrapped=bootstrapped,
    )


def rebalance(base: PartitionMap, target: PartitionMap, *, status: str = "running",
              active: bool = False, updated_at: float = NOW, failure: str | None = None,
              ) -> RebalanceView:  # fmt: skip
    return RebalanceView(
        status=status,
        base=base,
        target=target,
        active=active,
        partitions_done=3,
        partitions_total=10,
        steps_done=12,
        steps_total=40,
        bytes_moved=4096,
        eta_s=30.0 if active else None,
        failure=failure,
        updated_at=updated_at,
    )
