"""Carry out ``decide``'s actions, idempotently; no policy here, only effects and Events.

Every action may be repeated after a crash: apply is server-side apply, installing the same map
again is a no-op on a node, a rebalance is created only when none is unfinished (the executor
refuses otherwise) and resumed from its persisted state, and PVC deletion of an absent PVC is a
no-op. A failed action raises; the pass ends and the next one observes again.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from kvnode.core import plan as planning
from kvnode.core.model import PartitionMap

from kvoperator import decide as policy
from kvoperator import manifests
from kvoperator.model import names as n
from kvoperator.model.names import ClusterNames
from kvoperator.model.spec import ClusterSpec, ReclaimPolicy
from kvoperator.reconcile.ports import KubeApi, NodeApi
from kvoperator.reconcile.runtime import RebalanceRunner

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Context:
    kube: KubeApi
    nodes: NodeApi
    names: ClusterNames
    owner: manifests.Owner
    spec: ClusterSpec
    body: dict[str, Any]  # the KVCluster, for Events
    runner: RebalanceRunner
    statefulset_replicas: int | None  # as observed in this pass

    async def event(self, reason: str, message: str, *, warning: bool = False) -> None:
        log.log(logging.WARNING if warning else logging.INFO, "%s: %s", reason, message)
        await self.kube.emit_event(self.body, reason=reason, message=message, warning=warning)


async def act(ctx: Context, action: policy.Action) -> None:
    match action:
        case policy.ApplyObjects(replicas=replicas):
            await _apply(ctx, replicas)
        case policy.InstallMap(pmap=pmap, ordinals=ordinals):
            await _install(ctx, pmap, ordinals)
        case policy.StartRebalance(current=current, target=target):
            plan = ctx.runner.start(current, target)
            await ctx.event(
                "RebalanceStarted",
                f"{len(current.nodes)} -> {len(target.nodes)} nodes from map epoch "
                f"{current.epoch}: {plan.partitions_total} partitions to move in "
                f"{plan.steps_total} steps",
            )
        case policy.ResumeRebalance():
            ctx.runner.resume(max_concurrent=ctx.spec.replacement.max_concurrent)
            await ctx.event("RebalanceResumed", "resuming the persisted rebalance")
        case policy.ReplaceReplicas(current=current, replacements=pairs, max_concurrent=cap):
            await _replace(ctx, current, pairs, cap)
        case policy.ReclaimVolumes(pvcs=pvcs, policy=reclaim, epoch=epoch):
            await _reclaim(ctx, pvcs, reclaim, epoch)
        case policy.RollPod(ordinal=ordinal, transfers=transfers):
            await _roll(ctx, ordinal, transfers)


async def _roll(ctx: Context, ordinal: int, transfers: tuple[tuple[int, str], ...]) -> None:
    """Move the pod's leaderships away (best effort: the roll is safe without it, since every
    partition keeps a quorum, it only spares clients an election), then delete the pod."""
    pod = ctx.names.pod(ordinal)
    node = ctx.names.node(ordinal)
    moved, failed = 0, []
    for partition, to in transfers:
        try:
            await ctx.nodes.admin.transfer_leader(node, partition, to)
            moved += 1
        except Exception as e:
            failed.append(f"{partition}: {e}")
    if failed:
        log.warning("leadership moves off %s failed: %s", pod, "; ".join(failed))
    await ctx.kube.delete_pod(ctx.names.namespace, pod)
    await ctx.event(
        "PodRolled",
        f"{pod} deleted to be recreated from the new template "
        f"({moved}/{len(transfers)} leaderships moved off it first)",
    )


async def _replace(
    ctx: Context, current: PartitionMap, pairs: tuple[tuple[int, str, str], ...], cap: int
) -> None:
    """Start the executor on a replacement plan: the map's replicas stay as they are (each
    lost replica comes back as a fresh copy), only the epochs move on."""
    plan = planning.plan_replacement(current.replicas, pairs)
    replicas = [list(r) for r in current.replicas]
    for move in plan.moves:
        replicas[move.partition] = list(move.target)
    target = PartitionMap.build(
        epoch=current.epoch,
        nodes=current.nodes,
        replicas=replicas,
        replication=current.replication,
    )
    ctx.runner.start(current, target, plan=plan, max_concurrent=cap)
    lost = ", ".join(f"{p}@{old}" + ("" if old == new else f"->{new}") for p, old, new in pairs)
    await ctx.event(
        "ReplicaReplacementStarted",
        f"replacing {len(pairs)} replicas, {cap} at a time (remove, seed, add, catch up, "
        f"verify): {lost}",
    )


async def _apply(ctx: Context, replicas: int) -> None:
    for obj in manifests.owned_objects(ctx.spec, ctx.names, ctx.owner, replicas=replicas):
        await ctx.kube.apply(obj)
    before = ctx.statefulset_replicas
    if before is None:
        await ctx.event("Created", f"StatefulSet {ctx.names.statefulset} with {replicas} pods")
    elif before != replicas:
        await ctx.event("StatefulSetScaled", f"StatefulSet pods {before} -> {replicas}")


async def _install(ctx: Context, pmap: PartitionMap, ordinals: tuple[int, ...]) -> None:
    targets = [pmap.node(ctx.names.pod(o)) for o in ordinals]
    results = await asyncio.gather(
        *(ctx.nodes.install_map(t, pmap) for t in targets), return_exceptions=True
    )
    failed = [
        f"{t.node_id}: {r}"
        for t, r in zip(targets, results, strict=True)
        if isinstance(r, Exception)
    ]
    done = len(targets) - len(failed)
    await ctx.event("MapInstalled", f"map epoch {pmap.epoch} installed on {done} nodes")
    if failed:
        raise RuntimeError(f"map epoch {pmap.epoch} not installed on: {'; '.join(failed)}")


async def _reclaim(ctx: Context, pvcs: tuple[str, ...], reclaim: ReclaimPolicy, epoch: int) -> None:
    ns = ctx.names.namespace
    for name in pvcs:
        if reclaim is ReclaimPolicy.DELETE:
            await ctx.kube.delete_pvc(ns, name)
        else:
            await ctx.kube.annotate_pvc(ns, name, {n.RETIRED_ANNOTATION: str(epoch)})
    verb = "deleted" if reclaim is ReclaimPolicy.DELETE else "retained (marked retired)"
    await ctx.event("VolumesReclaimed", f"volumes of removed nodes {verb}: {', '.join(pvcs)}")
