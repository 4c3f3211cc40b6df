"""``Reconciler``: the loop that drives one KVCluster (observe -> decide -> act -> report).

Events only nudge it (``nudge``); it runs a pass at least every ``reconcile_interval_s``, every
``busy_interval_s`` while work is in progress. A pass reads everything it needs from the cluster
(the KVCluster, its objects, the nodes, the persisted rebalance), so any pass can fail or be
repeated, and a restarted operator carries on where the previous one stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import time
from collections.abc import Callable
from typing import Any

from kvnode.rebalance import executor

from kvoperator import decide as policy
from kvoperator import manifests
from kvoperator.metrics import OperatorMetrics
from kvoperator.model.names import ClusterNames
from kvoperator.model.spec import ClusterSpec, SpecError, parse_spec
from kvoperator.model.status import Condition, Phase, merge_conditions
from kvoperator.reconcile import act as acting
from kvoperator.reconcile.access import NodeAccess
from kvoperator.reconcile.observe import StateUnreadable, observe
from kvoperator.reconcile.ports import KubeApi, NodeApi
from kvoperator.reconcile.runtime import RebalanceRunner
from kvoperator.settings import OperatorSettings

log = logging.getLogger(__name__)
Obj = dict[str, Any]


def _now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _changed(old: Obj | None, new: Obj) -> bool:
    old = old or {}
    return any(old.get(k) != v for k, v in new.items() if not (v is None and k not in old))


class Reconciler:
    def __init__(
        self,
        *,
        kube: KubeApi,
        nodes: NodeApi,
        settings: OperatorSettings,
        metrics: OperatorMetrics,
        namespace: str,
        name: str,
        clock: Callable[[], float] = time.time,
        rebalance_options: executor.Options | None = None,
    ) -> None:
        self._kube = kube
        self._nodes = nodes
        self._settings = settings
        self._metrics = metrics
        self._ns = namespace
        self._name = name
        self._clock = clock
        self._wake = asyncio.Event()
        self._runner: RebalanceRunner | None = None
        self._runner_uid: str | None = None
        self._body: Obj = {}
        self._access = NodeAccess(kube, nodes, namespace)
        s = settings
        self._options = rebalance_options or executor.Options(
            max_concurrent=s.rebalance_concurrency, step_timeout_s=s.rebalance_step_timeout_s
        )

    def nudge(self) -> None:
        self._wake.set()

    @property
    def runner(self) -> RebalanceRunner | None:
        return self._runner

    async def run(self, stopped: Callable[[], bool]) -> None:
        """Pass after pass until ``stopped()``; the running rebalance is cancelled on the way
        out (it resumes from its persisted state)."""
        s = self._settings
        loop = asyncio.get_running_loop()
        try:
            while not stopped():
                started = loop.time()
                self._wake.clear()
                busy = await self.safe_pass()
                interval = s.busy_interval_s if busy else s.reconcile_interval_s
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), interval)
                # Our own status patches come back as events: however often we are woken,
                # passes start at most once per busy interval.
                gap = s.busy_interval_s - (loop.time() - started)
                if gap > 0:
                    await asyncio.sleep(gap)
        finally:
            await self.close()

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.stop()
        self._access.forget()

    async def safe_pass(self) -> bool:
        """One pass; an exception is logged and counted (the next pass retries)."""
        labels = (self._ns, self._name)
        try:
            busy = await self.reconcile_once()
        except Exception:
            log.exception("reconcile of %s/%s failed; retrying", self._ns, self._name)
            self._metrics.reconciles.labels(*labels, "error").inc()
            return True
        self._metrics.reconciles.labels(*labels, "ok").inc()
        return busy

    def _ensure_runner(self, names: ClusterNames, owner: manifests.Owner) -> RebalanceRunner:
        if self._runner is None or self._runner_uid != owner.uid:
            self._runner = RebalanceRunner(
                store=self._kube.state_store(names, owner),
                admin=self._nodes.admin,
                options=self._options,
                on_progress=self._on_progress,
                on_finish=self._on_finish,
            )
            self._runner_uid = owner.uid
        return self._runner

    async def reconcile_once(self) -> bool:
        """Observe, decide, act, report. Returns True while work is in progress."""
        body = await self._kube.get_cluster(self._ns, self._name)
        if body is None:
            self._metrics.forget(self._ns, self._name)
            return False
        self._body = body
        meta = body["metadata"]
        if meta.get("deletionTimestamp"):  # being deleted: garbage collection takes it from here
            await self.close()
            return False
        names = ClusterNames(self._name, self._ns, self._settings.cluster_domain)
        owner = manifests.Owner(self._name, meta["uid"])
        runner = self._ensure_runner(names, owner)
        generation = int(meta.get("generation", 0))
        try:
            spec = parse_spec(body.get("spec"), default_image=self._settings.default_image)
        except SpecError as e:
            self._metrics.reconciles.labels(self._ns, self._name, "invalid_spec").inc()
            await self._blocked(body, names, generation, "InvalidSpec", str(e))
            return False
        problem = await self._access.update(names, spec, owner, body)
        if problem is not None:
            await self._blocked(body, names, generation, problem.reason, problem.message)
            return True
        try:
            seen = await observe(
                self._kube, self._nodes, names, spec,
                generation=generation, now=self._clock(), live=runner.live,
                bootstrapped=bool((body.get("status") or {}).get("bootstrapped")),
                previous_phase=(body.get("status") or {}).get("phase"),
            )  # fmt: skip
        except StateUnreadable as e:
            await self._blocked(body, names, generation, "RebalanceStateUnreadable", str(e))
            return True
        decision = policy.decide(
            spec,
            seen.observed,
            names,
            objects_current=seen.objects_current,
            retry_after_s=self._settings.retry_after_failure_s,
        )
        ctx = acting.Context(
            self._kube, self._nodes, names, owner, spec, body, runner,
            seen.observed.statefulset_replicas,
        )  # fmt: skip
        try:
            for action in decision.actions:
                await acting.act(ctx, action)
        finally:  # the status says what was decided even when an action failed
            await self._report(body, names, spec, decision, generation)
        return decision.phase is not Phase.READY or runner.busy

    async def _report(
        self,
        body: Obj,
        names: ClusterNames,
        spec: ClusterSpec,
        decision: policy.Decision,
        generation: int,
    ) -> None:
        old = body.get("status") or {}
        status = decision.status(names, generation=generation).to_dict(previous=old, now=_now_iso())
        self._record_metrics(status)
        self._metrics.quorum_lost.labels(self._ns, self._name).set(len(decision.quorum.lost))
        if not _changed(old, status):
            return
        await self._kube.patch_cluster_status(self._ns, self._name, status)
        await self._quorum_event(body, old, decision)
        if old.get("phase") != status["phase"]:
            warning = status["phase"] == Phase.DEGRADED.value
            await self._kube.emit_event(
                body,
                reason=f"Phase{status['phase']}",
                message=status["message"] or status["phase"],
                warning=warning,
            )

    async def _quorum_event(self, body: Obj, old: Obj, decision: policy.Decision) -> None:
        """``QuorumLost`` (warning) when the set of partitions without quorum changes to a
        non-empty one, ``QuorumRestored`` when it empties (stable reasons, for alerting)."""
        conds: list[Obj] = old.get("conditions") or []
        before: Obj = next((c for c in conds if c.get("type") == "QuorumLost"), {})
        now = decision.quorum.condition()
        was_lost = before.get("status") == "True"
        if now.status and (not was_lost or before.get("message") != now.message):
            msg = now.message
            await self._kube.emit_event(body, reason="QuorumLost", message=msg, warning=True)
        elif was_lost and not now.status and decision.quorum.known:
            msg = "every partition has a quorum and a leader again"
            await self._kube.emit_event(body, reason="QuorumRestored", message=msg, warning=False)

    async def _blocked(
        self, body: Obj, names: ClusterNames, generation: int, reason: str, msg: str
    ) -> None:
        """Report a problem only a person can fix; nothing is changed in the cluster."""
        old = body.get("status") or {}
        conditions = [
            Condition("Ready", False, reason, msg),
            Condition("Progressing", False, reason, msg),
            Condition("Degraded", True, reason, msg),
        ]
        status = {
            "phase": Phase.DEGRADED.value,
            "message": msg,
            "selector": names.selector,
            "observedGeneration": generation,
            "conditions": merge_conditions(
                old.get("conditions") or [], conditions, generation=generation, now=_now_iso()
            ),
        }
        if _changed(old, status):
            await self._kube.patch_cluster_status(self._ns, self._name, status)
            await self._kube.emit_event(body, reason=reason, message=msg, warning=True)

    def _record_metrics(self, status: Obj) -> None:
        m, labels = self._metrics, (self._ns, self._name)
        m.replicas.labels(*labels).set(status["replicas"])
        m.ready_replicas.labels(*labels).set(status["readyReplicas"])
        m.epoch.labels(*labels).set(status["epoch"] or 0)
        rb = status.get("rebalance")
        m.rebalancing.labels(*labels).set(1 if status["phase"] == Phase.REBALANCING.value else 0)
        if rb:
            m.partitions_done.labels(*labels).set(rb["partitionsMoved"])
            m.partitions_total.labels(*labels).set(rb["partitionsTotal"])
            m.bytes_moved.labels(*labels).set(rb["bytesMoved"])
            m.eta.labels(*labels).set(rb.get("etaSeconds", -1))

    def _on_progress(self, _progress: executor.RebalanceProgress) -> None:
        """The executor's synchronous callback: wake the loop, which reports the progress."""
        self._wake.set()

    async def _on_finish(self, ok: bool, message: str) -> None:
        outcome = "done" if ok else "failed"
        self._metrics.rebalances.labels(self._ns, self._name, outcome).inc()
        reason = "RebalanceDone" if ok else "RebalanceFailed"
        await self._kube.emit_event(self._body, reason=reason, message=message, warning=not ok)
        self._wake.set()
