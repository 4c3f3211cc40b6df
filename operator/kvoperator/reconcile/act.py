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
from kvoperator.reconcile import backup
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
        case policy.ResumeRebalance(max_concurrent=cap):
            ctx.runner.resume(max_concurrent=cap)
            await ctx.event("RebalanceResumed", "resuming the persisted rebalance")
        case policy.ReplaceReplicas(
            current=current, replacements=pairs, max_concurrent=cap, away=away
        ):
            await _replace(ctx, current, pairs, cap, away)
        case policy.DropStale(ordinal=ordinal, partitions=partitions, pmap=pmap):
            await _drop_stale(ctx, ordinal, partitions, pmap)
        case policy.ReclaimVolumes(pvcs=pvcs, policy=reclaim, epoch=epoch):
            await _reclaim(ctx, pvcs, reclaim, epoch)
        case policy.RollPod(ordinal=ordinal, revision=revision, delete=delete):
            await (_delete_rolled(ctx, ordinal) if delete else _drain(ctx, ordinal, revision))
        case policy.UndrainNode(ordinal=ordinal, pmap=pmap):
            await _undrain(ctx, ordinal, pmap)
        case policy.RestoreBackup(pmap=pmap, backup=backup_name):
            await backup.run_restore(
                ctx.kube, ctx.names, ctx.owner, ctx.body,
                image=ctx.spec.image, pmap=pmap, backup=backup_name,
                auth_secret=ctx.spec.auth.secret_name if ctx.spec.auth else None,
                tls_secret=ctx.spec.tls.secret_name if ctx.spec.tls else None,
            )  # fmt: skip


async def _drain(ctx: Context, ordinal: int, revision: str) -> None:
    """Mark the volume (first: a crash after the drain leaves the mark), then drain the node;
    the node answers once it leads nothing or the call's deadline passed (asked again then)."""
    pod, ns = ctx.names.pod(ordinal), ctx.names.namespace
    await ctx.kube.annotate_pvc(ns, ctx.names.pvc(ordinal), {n.ROLL_DRAIN_ANNOTATION: revision})
    report = await ctx.nodes.set_drained(ctx.names.node(ordinal), True)
    if report.get("complete"):
        await ctx.event("NodeDrained", f"{pod} drained for the rolling update: it leads nothing")
    else:
        log.warning("%s still leads %s after the drain call", pod, report.get("leader_of"))


async def _delete_rolled(ctx: Context, ordinal: int) -> None:
    pod, ns = ctx.names.pod(ordinal), ctx.names.namespace
    await ctx.kube.delete_pod(ns, pod)
    await ctx.event(
        "PodRolled",
        f"{pod} drained (it leads no partition) and deleted, to be recreated from the new "
        "template; it is undrained once ready and caught up",
    )


async def _undrain(ctx: Context, ordinal: int, pmap: PartitionMap) -> None:
    """Undrain the rolled node once each replica it hosts applied its leader's commit index
    (read from the leader first, so a busy group is judged at one point of its log)."""
    pod, ns = ctx.names.pod(ordinal), ctx.names.namespace
    node = pmap.node(pod)
    admin = ctx.nodes.admin
    for p in pmap.partitions_of(pod):
        mine = await admin.replica_state(node, p)
        if mine.leader_id is None or mine.leader_id == pod:
            continue  # a leaderless group keeps the pod unready; a leader needs no catch-up
        commit = (await admin.replica_state(pmap.node(mine.leader_id), p)).commit_index
        applied = (await admin.replica_state(node, p)).last_applied
        if applied < commit:
            log.info("%s: partition %d applied %d < %d: not undrained yet", pod, p, applied, commit)
            return
    await ctx.nodes.set_drained(node, False)
    await ctx.kube.annotate_pvc(ns, ctx.names.pvc(ordinal), {n.ROLL_DRAIN_ANNOTATION: None})
    await ctx.event("NodeUndrained", f"{pod} is ready and caught up: undrained")


async def _replace(
    ctx: Context,
    current: PartitionMap,
    pairs: tuple[tuple[int, str, str], ...],
    cap: int,
    away: tuple[str, ...],
) -> None:
    """Start the executor on a replacement plan: each replica in ``pairs`` is replaced by a
    fresh copy (on the same node for a reseed); ``away`` nodes are left out of the target map
    (nothing is left on them, and they do not answer)."""
    plan = planning.plan_replacement(current.replicas, pairs)
    replicas = [list(r) for r in current.replicas]
    for move in plan.moves:
        replicas[move.partition] = list(move.target)
    target = PartitionMap.build(
        epoch=current.epoch,
        nodes=[x for x in current.nodes if x.node_id not in away],
        replicas=replicas,
        replication=current.replication,
    )
    ctx.runner.start(current, target, plan=plan, max_concurrent=cap)
    lost = ", ".join(f"{p}@{old}" + ("" if old == new else f"->{new}") for p, old, new in pairs)
    why = f"{', '.join(away)} away too long" if away else "lost with a volume"
    await ctx.event(
        "ReplicaReplacementStarted",
        f"replacing {len(pairs)} replicas ({why}), {cap} at a time (remove, seed, add, catch "
        f"up, verify): {lost}",
    )


async def _drop_stale(
    ctx: Context, ordinal: int, partitions: tuple[int, ...], pmap: PartitionMap
) -> None:
    """The node came back after its replicas were re-placed: tell it the current map (which
    does not list it: a drop is refused while the node's map lists it), then drop each old
    copy, so it only ever rejoins a group through a fresh seed."""
    node = ctx.names.node(ordinal)
    await ctx.nodes.install_map(node, pmap)
    for p in partitions:
        await ctx.nodes.admin.drop(node, p)
    await ctx.event(
        "StaleReplicasDropped",
        f"{node.node_id} is back: its old copies of partitions {list(partitions)} (re-placed "
        "while it was away) were dropped; it gets replicas back through the rebalance",
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
