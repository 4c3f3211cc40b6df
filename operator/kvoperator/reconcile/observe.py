"""Observe one KVCluster: everything ``decide`` needs, read from the cluster alone.

The nodes are asked for their maps concurrently, each call bounded (a node that does not answer
is unreachable for this pass, not an error). The persisted rebalance comes from its ConfigMap;
while this process runs it, the executor's live progress replaces the persisted counters.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from kvnode.core import plan as planning
from kvnode.core.model import PartitionMap
from kvnode.core.plan import StepKind
from kvnode.rebalance.executor import RebalanceProgress
from kvnode.rebalance.state import RebalanceState

from kvoperator import manifests
from kvoperator.kube.store import load_configmap
from kvoperator.model import names as n
from kvoperator.model.names import ClusterNames
from kvoperator.model.observed import NodeReport, Observed, PodView, PvcView, RebalanceView
from kvoperator.model.spec import ClusterSpec
from kvoperator.reconcile.ports import KubeApi, NodeApi

Obj = dict[str, Any]


class StateUnreadable(Exception):
    """The persisted rebalance state exists but cannot be read: nothing may be planned."""


@dataclass(frozen=True, slots=True)
class Observation:
    observed: Observed
    objects_current: bool  # the StatefulSet carries the config hash of this spec


async def observe(
    kube: KubeApi,
    nodes: NodeApi,
    names: ClusterNames,
    spec: ClusterSpec,
    *,
    generation: int,
    now: float,
    live: RebalanceProgress | None,
    bootstrapped: bool,
    previous_phase: str | None = None,
) -> Observation:
    """``live``: progress of the rebalance this process runs now (None: none runs here)."""
    ns = names.namespace
    sts, pods, pvcs, cm = await asyncio.gather(
        kube.get_statefulset(ns, names.statefulset),
        kube.list_pods(ns, names.labels),
        kube.list_pvcs(ns, names.labels),
        kube.get_configmap(ns, names.state_configmap),
    )
    pod_views = await _pods(kube, names, pods, zone_label=spec.scheduling.zone_label)
    reports, newest = await _maps(nodes, names, pod_views)
    try:
        loaded = load_configmap(cm)
    except ValueError as e:  # never plan over a rebalance we cannot read
        raise StateUnreadable(str(e)) from e
    rebalance = None if loaded is None else _rebalance(*loaded, live=live)
    observed = Observed(
        generation=generation,
        now=now,
        statefulset_replicas=None if sts is None else int(sts["spec"].get("replicas", 0)),
        pods=pod_views,
        pvcs=tuple(_pvcs(names, pvcs)),
        nodes=reports,
        cluster_map=newest,
        rebalance=rebalance,
        bootstrapped=bootstrapped,
        previous_phase=previous_phase,
        update_revision=None if sts is None else (sts.get("status") or {}).get("updateRevision"),
    )
    annotations = {} if sts is None else sts["metadata"].get("annotations") or {}
    current = annotations.get(manifests.CONFIG_HASH_ANNOTATION) == manifests.config_hash(
        spec, names
    )
    return Observation(observed, objects_current=current)


REVISION_LABEL = "controller-revision-hash"  # set by the StatefulSet controller on its pods


def _timestamp(raw: object) -> float | None:
    """An RFC 3339 timestamp of the API server as seconds since the epoch (None: unreadable)."""
    if not isinstance(raw, str):
        return None
    try:
        return datetime.fromisoformat(raw).timestamp()
    except ValueError:
        return None


def _condition(pod: Obj, kind: str) -> bool:
    conditions = pod.get("status", {}).get("conditions") or []
    return any(c.get("type") == kind and c.get("status") == "True" for c in conditions)


def _unready_since(pod: Obj, *, ready: bool) -> float | None:
    """When the pod stopped being ready (its Ready condition's transition), else when it was
    created (never ready: Pending, or starting)."""
    if ready:
        return None
    for c in pod.get("status", {}).get("conditions") or []:
        if c.get("type") == "Ready" and c.get("status") != "True":
            since = _timestamp(c.get("lastTransitionTime"))
            if since is not None:
                return since
    return _timestamp(pod["metadata"].get("creationTimestamp"))


async def _pods(
    kube: KubeApi, names: ClusterNames, pods: list[Obj], *, zone_label: str
) -> tuple[PodView, ...]:
    node_names = {p.get("spec", {}).get("nodeName") for p in pods} - {None}
    labels = await asyncio.gather(*(kube.node_labels(str(x)) for x in sorted(node_names)))
    zone_of: dict[str, str | None] = {
        x: (lab or {}).get(zone_label) for x, lab in zip(sorted(node_names), labels, strict=True)
    }
    views = []
    for pod in pods:
        meta, status = pod["metadata"], pod.get("status", {})
        ordinal = names.ordinal_of(meta["name"])
        if ordinal is None:
            continue
        running = (
            status.get("phase") == "Running"
            and bool(status.get("podIP"))
            and not meta.get("deletionTimestamp")
        )
        node_name = pod.get("spec", {}).get("nodeName")
        ready = running and _condition(pod, "Ready")
        views.append(
            PodView(
                ordinal=ordinal,
                name=meta["name"],
                running=running,
                ready=ready,
                unready_since=_unready_since(pod, ready=ready),
                zone=zone_of.get(node_name) if node_name else None,
                revision=(meta.get("labels") or {}).get(REVISION_LABEL),
                created=_timestamp(meta.get("creationTimestamp")),
            )
        )
    return tuple(sorted(views, key=lambda v: v.ordinal))


def _pvcs(names: ClusterNames, pvcs: list[Obj]) -> list[PvcView]:
    out = []
    for pvc in pvcs:
        meta = pvc["metadata"]
        ordinal = names.ordinal_of(meta["name"])
        if ordinal is None or meta.get("deletionTimestamp"):
            continue
        annotations: Mapping[str, str] = meta.get("annotations") or {}
        out.append(
            PvcView(
                ordinal,
                meta["name"],
                retired=n.RETIRED_ANNOTATION in annotations,
                roll_drained=n.ROLL_DRAIN_ANNOTATION in annotations,
            )
        )
    return sorted(out, key=lambda v: v.ordinal)


async def _maps(
    nodes: NodeApi, names: ClusterNames, pods: tuple[PodView, ...]
) -> tuple[tuple[NodeReport, ...], PartitionMap | None]:
    running = [p for p in pods if p.running]
    answers = await asyncio.gather(*(nodes.read_map(names.node(p.ordinal)) for p in running))
    # A node whose volume lost partitions is never ready: only those are asked which.
    unready = [p for p, a in zip(running, answers, strict=True) if a.pmap and not p.ready]
    lost = await asyncio.gather(*(nodes.needs_reseed(names.node(p.ordinal)) for p in unready))
    reseed = {p.ordinal: x or () for p, x in zip(unready, lost, strict=True)}
    newest = None
    for ans in answers:
        if ans.pmap is not None and (newest is None or ans.pmap.epoch > newest.epoch):
            newest = ans.pmap
    # A node the newest map does not list but that hosts replicas: back after its replicas were
    # re-placed elsewhere; they are stale and are dropped before it gets any back.
    outside = [
        p for p, a in zip(running, answers, strict=True)
        if a.pmap is not None and newest is not None and not newest.has_node(names.pod(p.ordinal))
    ]  # fmt: skip
    listed = await asyncio.gather(*(nodes.hosted(names.node(p.ordinal)) for p in outside))
    hosted = {p.ordinal: x for p, x in zip(outside, listed, strict=True)}
    reports = []
    for pod, ans in zip(running, answers, strict=True):
        epoch = None if ans.pmap is None else ans.pmap.epoch
        lost_here = reseed.get(pod.ordinal, ())
        report = NodeReport(pod.ordinal, ans.reachable, epoch, ans.leaders, lost_here)
        reports.append(replace(report, drained=ans.drained, hosted=hosted.get(pod.ordinal)))
    return tuple(reports), newest


def _rebalance(
    state: RebalanceState, updated_at: float, *, live: RebalanceProgress | None
) -> RebalanceView:
    s = planning.progress_summary(state.plan, state.progress)
    view = RebalanceView(
        status=state.status.value,
        base=state.base,
        target=state.target,
        active=live is not None,
        partitions_done=s.partitions_done,
        partitions_total=s.partitions_total,
        steps_done=s.steps_done,
        steps_total=s.steps_total,
        bytes_moved=state.bytes_moved,
        failure=state.failure or state.abort_reason,
        updated_at=updated_at,
        replacement=is_replacement(state),
    )
    if live is None:
        return view
    return RebalanceView(
        status=view.status,
        base=view.base,
        target=view.target,
        active=True,
        partitions_done=live.partitions_done,
        partitions_total=live.partitions_total,
        steps_done=live.steps_done,
        steps_total=live.steps_total,
        bytes_moved=live.bytes_moved,
        eta_s=live.eta_s,
        failure=view.failure,
        updated_at=updated_at,
        replacement=view.replacement,
    )


def is_replacement(state: RebalanceState) -> bool:
    """A replica replacement (``plan_replacement``: every move starts by removing a member that
    is gone) over an unchanged node set, not a resize."""
    same_nodes = {n.node_id for n in state.base.nodes} == {n.node_id for n in state.target.nodes}
    moves = state.plan.moves
    return same_nodes and bool(moves) and all(m.steps[0].kind is StepKind.REMOVE for m in moves)
