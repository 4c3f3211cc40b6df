"""``decide(spec, observed) -> Decision``: the whole reconcile policy, as a pure function.

Level-based: the decision depends only on what is observed now (StatefulSet, pods, PVCs, the
nodes' maps, the persisted rebalance), never on which event woke the operator, so any pass may
be repeated or skipped and a restarted operator decides the same. The order of work, and why:

1. Objects first (``ApplyObjects``): the StatefulSet spans every ordinal any map or rebalance
   still needs; it grows BEFORE a scale-up rebalance and shrinks only AFTER a scale-down
   rebalance is done, so the operator, not the StatefulSet, owns the replica count in effect.
2. Bootstrap: once pods 0..replicas-1 run, the epoch-1 map from ``place()`` is installed on all.
3. A persisted unfinished rebalance is resumed before anything else is planned; a scale request
   that arrives meanwhile waits for it (never two plans at once).
4. At rest, a node set different from ordinals 0..replicas-1 starts a rebalance to it, once the
   current members are ready and the joiners run. Drain, verify, then delete: leaving ordinals
   lose their pods only when the final map no longer lists them, and their volumes get the
   reclaim policy after the pods are gone.
"""

from __future__ import annotations

import dataclasses

from kvnode.core.model import NodeInfo, PartitionMap
from kvnode.core.placement import NodeSlot, place

from kvoperator.decide import away, replacement, rolling, volumes
from kvoperator.decide.actions import (
    Action,
    ApplyObjects,
    Decision,
    InstallMap,
    RestoreBackup,
    ResumeRebalance,
    StartRebalance,
)
from kvoperator.decide.health import QuorumHealth, quorum_health
from kvoperator.decide.report import rebalance_progress, report_quorum
from kvoperator.model.names import ClusterNames
from kvoperator.model.observed import Observed, RebalanceView
from kvoperator.model.spec import ClusterSpec
from kvoperator.model.status import Condition, Phase

RETRY_AFTER_FAILURE_S = 60.0  # wait this long after an aborted rebalance before re-planning


def decide(
    spec: ClusterSpec,
    obs: Observed,
    names: ClusterNames,
    *,
    objects_current: bool,
    retry_after_s: float = RETRY_AFTER_FAILURE_S,
) -> Decision:
    """The next actions and the status to report. ``objects_current``: the owned objects were
    built from this spec (the StatefulSet carries the hash of what the operator would write)."""
    m, rb = obs.cluster_map, obs.rebalance
    if spec.paused:
        paused = report_quorum(_paused(obs), _health(obs))
        return dataclasses.replace(paused, bootstrapped=_bootstrapped(obs))
    unfinished = rb is not None and not rb.finished
    if unfinished:
        assert rb is not None
        need = max(_span(rb.base), _span(rb.target))
    elif m is None and obs.bootstrapped:  # no node answers now: never shrink blind
        need = max(spec.replicas, obs.statefulset_replicas or 0)
    elif m is None:
        need = spec.replicas
    elif volumes.retired_joiners(spec, obs, m):
        need = _span(m)  # a pod must never start on a stale volume
    else:
        need = max(_span(m), spec.replicas)
    apply: tuple[Action, ...] = ()
    if not objects_current or obs.statefulset_replicas != need:
        apply = (ApplyObjects(need),)
    if unfinished:
        assert rb is not None
        d = _rebalancing(spec, obs, rb)
    elif m is None and obs.bootstrapped:
        msg = "no node answers with a map (restarting?): waiting for them"
        d = _waiting(obs, Phase.DEGRADED, "NoMapReachable", msg, degraded=True)
    elif m is None:
        d = _bootstrap(spec, obs, names)
    else:
        d = _at_rest(spec, obs, names, m, retry_after_s=retry_after_s)
    d = report_quorum(d, _health(obs))
    return dataclasses.replace(d, actions=apply + d.actions, bootstrapped=_bootstrapped(obs))


def _health(obs: Observed) -> QuorumHealth:
    """Judged only once bootstrapped: before, leaderless partitions are being elected."""
    if not _bootstrapped(obs):
        return QuorumHealth(lost=(), known=False)
    return quorum_health(obs.cluster_map, obs.nodes)


def _bootstrapped(obs: Observed) -> bool:
    """Once every node of the first map holds a map, a member without one is an emptied volume,
    never a bootstrap still in progress; the answer is persisted in status."""
    m = obs.cluster_map
    if obs.bootstrapped or (m is not None and m.epoch > 1):
        return True
    if m is None:
        return False
    epochs = {n.ordinal: n.epoch for n in obs.nodes}
    return all(epochs.get(o) is not None for o in _members(m))


def _with(d: Decision, *, actions: tuple[Action, ...]) -> Decision:
    return dataclasses.replace(d, actions=actions)


def _span(pmap: PartitionMap) -> int:
    """How many StatefulSet ordinals a map needs (its highest ordinal + 1)."""
    return max((_ordinal(n.node_id) for n in pmap.nodes), default=-1) + 1


def _pods(m: PartitionMap, ordinals: list[int]) -> list[str]:
    return [n.node_id for n in m.nodes if _ordinal(n.node_id) in ordinals]


def _ordinal(node_id: str) -> int:
    return int(node_id.rsplit("-", 1)[1])


def _members(pmap: PartitionMap) -> list[int]:
    return sorted(_ordinal(n.node_id) for n in pmap.nodes)


def _counts(obs: Observed) -> tuple[int, int, int | None]:
    m = obs.cluster_map
    if m is None:
        return 0, 0, None
    members = _members(m)
    return len(members), sum(1 for o in members if obs.ready([o])), m.epoch


def _waiting(
    obs: Observed, phase: Phase, reason: str, message: str, *, degraded: bool = False
) -> Decision:
    replicas, ready, epoch = _counts(obs)
    return Decision(
        actions=(),
        phase=phase,
        message=message,
        ready=Condition("Ready", False, reason, message),
        progressing=Condition("Progressing", True, reason, message),
        degraded=Condition("Degraded", True, reason, message) if degraded else None,
        replicas=replicas,
        ready_replicas=ready,
        epoch=epoch,
    )


def _paused(obs: Observed) -> Decision:
    msg = "reconciliation is paused (spec.paused): the operator changes nothing"
    replicas, ready, epoch = _counts(obs)
    return Decision(
        actions=(),
        phase=Phase.PAUSED,
        message=msg,
        ready=Condition("Ready", False, "Paused", msg),
        progressing=Condition("Progressing", False, "Paused", msg),
        replicas=replicas,
        ready_replicas=ready,
        epoch=epoch,
    )


def _bootstrap(spec: ClusterSpec, obs: Observed, names: ClusterNames) -> Decision:
    ordinals = range(spec.replicas)
    running = sum(1 for o in ordinals if obs.running([o]))
    if running < spec.replicas:
        msg = f"waiting for pods to run: {running}/{spec.replicas}"
        return _waiting(obs, Phase.BOOTSTRAPPING, "WaitingForPods", msg)
    zones = obs.zones()
    nodes = [names.node(o, zone=zones.get(o)) for o in ordinals]
    pmap = _map(nodes, spec, epoch=1, previous=None)
    if spec.restore_from:  # the restore Job installs the map once every replica holds its data
        msg = f"restoring backup {spec.restore_from} into {spec.replicas} nodes"
        d = _waiting(obs, Phase.BOOTSTRAPPING, "RestoringBackup", msg)
        return _with(d, actions=(RestoreBackup(pmap, spec.restore_from),))
    msg = f"installing the epoch-1 map on {spec.replicas} nodes"
    d = _waiting(obs, Phase.BOOTSTRAPPING, "InstallingMap", msg)
    return _with(d, actions=(InstallMap(pmap, tuple(ordinals)),))


def _map(
    nodes: list[NodeInfo],
    spec: ClusterSpec,
    *,
    epoch: int,
    previous: PartitionMap | None,
) -> PartitionMap:
    replicas = place(
        [NodeSlot(n.node_id, n.zone) for n in nodes],
        partitions=spec.partitions if previous is None else previous.partitions,
        replication=spec.replication_factor if previous is None else previous.replication,
        previous=None if previous is None else previous.replicas,
    )
    replication = spec.replication_factor if previous is None else previous.replication
    return PartitionMap.build(epoch=epoch, nodes=nodes, replicas=replicas, replication=replication)


def _rebalancing(spec: ClusterSpec, obs: Observed, rb: RebalanceView) -> Decision:
    frm, to = len(rb.base.nodes), rb.target_size
    what = "aborting" if rb.status in ("aborting", "failed") else "rebalancing"
    msg = f"{what} {frm} -> {to} nodes: {rb.partitions_done}/{rb.partitions_total} partitions"
    if rb.replacement:  # same nodes: replicas lost with a volume (or away) are being replaced
        msg = f"{what} replica replacement: {rb.partitions_done}/{rb.partitions_total} partitions"
    if spec.replicas != to:
        msg += f"; replicas {spec.replicas} requested: waits for this rebalance to finish"
    actions: tuple[Action, ...] = ()
    if not rb.active:
        needed = sorted({_ordinal(n.node_id) for n in (*rb.base.nodes, *rb.target.nodes)})
        if not obs.running(needed):
            msg += "; waiting for its pods to run before resuming"
        else:
            actions = (
                ResumeRebalance(spec.replacement.max_concurrent if rb.replacement else None),
            )
    replicas, ready, epoch = _counts(obs)
    reason = "ReplacingReplicas" if rb.replacement else "Rebalancing"
    return Decision(
        actions=actions,
        phase=Phase.REBALANCING,
        message=msg,
        ready=Condition("Ready", False, reason, msg),
        progressing=Condition("Progressing", True, reason, msg),
        degraded=Condition("Degraded", True, "RebalanceFailed", rb.failure or msg)
        if rb.status == "failed"
        else None,
        replicas=replicas,
        ready_replicas=ready,
        epoch=epoch,
        progress=rebalance_progress(rb),
        rebalancing=True,
    )


def _at_rest(
    spec: ClusterSpec,
    obs: Observed,
    names: ClusterNames,
    m: PartitionMap,
    *,
    retry_after_s: float,
) -> Decision:
    members, target = _members(m), list(range(spec.replicas))
    if m.partitions != spec.partitions or m.replication != spec.replication_factor:
        msg = (
            f"the installed map has {m.partitions} partitions and replication factor "
            f"{m.replication}, the spec asks {spec.partitions} and {spec.replication_factor}: "
            "these cannot change"
        )
        return _waiting(obs, Phase.DEGRADED, "SpecMismatch", msg, degraded=True)
    empty = [
        n.ordinal for n in obs.nodes if n.reachable and n.ordinal in members and n.epoch is None
    ]
    if empty and not _bootstrapped(obs):  # the first install did not reach them all yet
        msg = f"installing the epoch-1 map on {', '.join(names.pod(o) for o in empty)}"
        d = _waiting(obs, Phase.BOOTSTRAPPING, "InstallingMap", msg)
        return _with(d, actions=(InstallMap(m, tuple(empty)),))
    lost = replacement.lost_replicas(obs, m)  # bootstrapped: an empty member is a lost volume
    lagging = tuple(
        n.ordinal
        for n in obs.nodes
        if n.reachable and n.ordinal in members and n.epoch is not None and n.epoch < m.epoch
    )
    repair: tuple[Action, ...] = (InstallMap(m, lagging),) if lagging else ()
    if lost:
        d = _waiting(obs, Phase.DEGRADED, "ReplicasLost", "")
        d = replacement.decide_reseed(
            spec, obs, m, lost, _health(obs), waiting=d, retry_after_s=retry_after_s
        )
        return d if d.actions else _with(d, actions=repair)
    gone = away.away_nodes(spec, obs, m) if members == target else []
    if gone:
        d = _waiting(obs, Phase.DEGRADED, "NodeAway", "")
        return away.decide_away(spec, obs, m, gone[0], _health(obs), waiting=d, repair=repair)
    if members == target:
        c = _converged(spec, obs, m)
        roll = () if repair else c.actions  # no pod goes down while a node's map lags
        return _with(c, actions=repair + volumes.reclaim(spec, obs, m) + roll)
    d = _scale(spec, obs, names, m, retry_after_s=retry_after_s)
    return d if d.actions else _with(d, actions=repair)


def _converged(spec: ClusterSpec, obs: Observed, m: PartitionMap) -> Decision:
    replicas, ready, epoch = _counts(obs)
    extra = sorted(p.name for p in obs.pods if p.ordinal >= spec.replicas)
    if extra or volumes.reclaim(spec, obs, m):
        msg = "drained: removing " + (", ".join(extra) if extra else "volumes of removed nodes")
        return _waiting(obs, Phase.SCALING, "RemovingDrainedNodes", msg)
    members = _members(m)
    stale = rolling.outdated(obs, members)
    if ready < replicas:
        not_ready = [n.node_id for n in m.nodes if not obs.ready([_ordinal(n.node_id)])]
        # Only while pods are still on the old template is a starting pod part of a roll (the
        # last rolled pod's start shows as NodesNotReady: nothing tells it from a crash).
        rolling_now = stale or rolling.roll_marked(obs, members)
        young, stuck = rolling.starting(
            obs, [_ordinal(x) for x in not_ready] if rolling_now else []
        )
        if stuck:
            msg = (
                f"rolling update stopped: {', '.join(sorted(_pods(m, stuck)))} not ready "
                f"{round(rolling.STUCK_AFTER_S)}s after being recreated from the new template"
            )
            return _waiting(obs, Phase.DEGRADED, "RollingUpdateStuck", msg, degraded=True)
        if young and len(young) == len(not_ready):
            msg = f"rolling update: waiting for {', '.join(_pods(m, young))} to be ready"
            msg += f" ({len(stale)} more to roll)" if stale else ""
            return _waiting(obs, Phase.UPGRADING, "RollingUpdate", msg)
        msg = f"nodes not ready: {', '.join(sorted(not_ready))}"
        # Only right after the bootstrap (leaders are being elected) is a node that is not
        # ready part of bootstrapping; once the cluster was anything else (Ready), it is not.
        if m.epoch == 1 and obs.previous_phase in (None, "", Phase.BOOTSTRAPPING.value):
            return _waiting(obs, Phase.BOOTSTRAPPING, "NodesNotReady", msg)
        return _waiting(obs, Phase.DEGRADED, "NodesNotReady", msg, degraded=True)
    roll = rolling.step(obs, m, members, stale)
    if roll is not None:
        action, msg = roll
        return _with(_waiting(obs, Phase.UPGRADING, "RollingUpdate", msg), actions=(action,))
    msg = f"{replicas} nodes ready at map epoch {epoch}"
    return Decision(
        actions=(),
        phase=Phase.READY,
        message=msg,
        ready=Condition("Ready", True, "AllNodesReady", msg),
        progressing=Condition("Progressing", False, "Converged", msg),
        replicas=replicas,
        ready_replicas=ready,
        epoch=epoch,
    )


def _scale(
    spec: ClusterSpec,
    obs: Observed,
    names: ClusterNames,
    m: PartitionMap,
    *,
    retry_after_s: float,
) -> Decision:
    members, target = _members(m), list(range(spec.replicas))
    rb = obs.rebalance
    if rb is not None and rb.status == "aborted" and obs.now - rb.updated_at < retry_after_s:
        left = round(retry_after_s - (obs.now - rb.updated_at))
        msg = (
            f"the last rebalance was aborted ({rb.failure or 'no reason recorded'}); "
            f"planning again in {left}s"
        )
        return _waiting(obs, Phase.DEGRADED, "RebalanceAborted", msg, degraded=True)
    joiners = [o for o in target if o not in members]
    retired = volumes.retired_joiners(spec, obs, m)
    if retired:
        msg = (
            f"{', '.join(retired)} hold data retained at an earlier scale-down; delete them "
            "to scale up (a node must not rejoin with stale data)"
        )
        return _waiting(obs, Phase.DEGRADED, "RetainedVolume", msg, degraded=True)
    not_ready = [names.pod(o) for o in members if not obs.ready([o])]
    if not_ready:
        msg = f"waiting for members to be ready before rebalancing: {', '.join(not_ready)}"
        return _waiting(obs, Phase.SCALING, "WaitingForMembers", msg, degraded=True)
    # Running is not enough: the rebalance announces its first map to the joiners at once, and
    # a joiner whose process is not listening yet would miss it and fail every step.
    answering = {n.ordinal for n in obs.nodes if n.reachable}
    not_running = [names.pod(o) for o in joiners if not obs.running([o]) or o not in answering]
    if not_running:
        msg = f"waiting for new pods to run and answer: {', '.join(not_running)}"
        return _waiting(obs, Phase.SCALING, "WaitingForPods", msg)
    stale = away.stale_replicas(obs, m, joiners)
    if stale is not None:
        msg = f"{names.pod(stale.ordinal)} still hosts replicas of partitions {stale.partitions}"
        msg += " from before it was away: dropping them before it rejoins"
        return _with(_waiting(obs, Phase.SCALING, "DroppingStaleReplicas", msg), actions=(stale,))
    zones = obs.zones()
    nodes = [
        m.node(names.pod(o)) if o in members else names.node(o, zone=zones.get(o)) for o in target
    ]
    tgt = _map(nodes, spec, epoch=m.epoch, previous=m)
    msg = f"starting a rebalance {len(members)} -> {spec.replicas} nodes"
    d = _waiting(obs, Phase.REBALANCING, "StartingRebalance", msg)
    return _with(d, actions=(StartRebalance(m, tgt),))
