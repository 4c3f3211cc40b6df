"""kopf wiring, and nothing else: every event only nudges the KVCluster's reconcile loop, which
a kopf daemon runs (one per KVCluster) and which does all the work.

kopf runs standalone (no peering objects): the chart runs one operator replica with the
``Recreate`` strategy, so two operators never drive the same cluster. kopf keeps its own
bookkeeping in ``ringkv.io/*`` annotations, never in ``status`` (the status schema is ours).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import kopf
import prometheus_client

from kvoperator.metrics import OperatorMetrics
from kvoperator.model import backup as backup_model
from kvoperator.model import names as n
from kvoperator.reconcile.backup import BackupReconciler
from kvoperator.reconcile.ports import KubeApi, NodeApi
from kvoperator.reconcile.reconciler import Reconciler
from kvoperator.settings import OperatorSettings

log = logging.getLogger(__name__)


@dataclass
class Shared:
    """What every handler shares (kopf's ``memo.shared``): one reconciler per KVCluster."""

    settings: OperatorSettings
    kube: KubeApi
    nodes: NodeApi
    metrics: OperatorMetrics
    reconcilers: dict[tuple[str, str], Reconciler] = field(default_factory=dict)

    def reconciler(self, namespace: str, name: str) -> Reconciler:
        key = (namespace, name)
        if key not in self.reconcilers:
            self.reconcilers[key] = Reconciler(
                kube=self.kube,
                nodes=self.nodes,
                settings=self.settings,
                metrics=self.metrics,
                namespace=namespace,
                name=name,
            )
        return self.reconcilers[key]


def _shared(memo: Any) -> Shared:
    shared = memo.shared
    assert isinstance(shared, Shared)
    return shared


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.peering.standalone = True
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=n.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=n.GROUP, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{n.GROUP}/operator"
    settings.posting.level = logging.WARNING  # our own Events carry the story
    ours = _shared(memo).settings
    if ours.metrics_port:
        prometheus_client.start_http_server(ours.metrics_port, addr=ours.bind_host)
        log.info("metrics on %s:%d/metrics", ours.bind_host, ours.metrics_port)


@kopf.on.cleanup()
async def shutdown(memo: kopf.Memo, **_: Any) -> None:
    await _shared(memo).nodes.close()


@kopf.on.event(n.GROUP, n.VERSION, n.PLURAL)
async def nudge(*, namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    """Any change (spec, status, metadata) wakes the loop; it decides from what it reads. No
    loop yet (or any more): nothing to wake, the daemon's first pass reads everything."""
    rec = _shared(memo).reconcilers.get((namespace or "", name))
    if rec is not None:
        rec.nudge()


@kopf.daemon(n.GROUP, n.VERSION, n.PLURAL, cancellation_timeout=30.0)
async def drive(
    *, namespace: str | None, name: str, stopped: kopf.DaemonStopped, memo: Any, **_: Any
) -> None:
    """Runs the KVCluster's reconcile loop for as long as the object and the operator live."""
    shared = _shared(memo)
    try:
        await shared.reconciler(namespace or "", name).run(lambda: bool(stopped))
    finally:
        shared.reconcilers.pop((namespace or "", name), None)


def _unfinished(status: Any, **_: Any) -> bool:
    return (status or {}).get("phase") not in ("Completed", "Failed")


@kopf.timer(n.GROUP, n.VERSION, backup_model.PLURAL, interval=2.0, when=_unfinished)
async def drive_backup(*, namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    """A KVClusterBackup's pass (``reconcile.backup``); finished backups are not polled."""
    shared = _shared(memo)
    s = shared.settings
    rec = BackupReconciler(
        shared.kube, cluster_domain=s.cluster_domain, default_image=s.default_image
    )
    try:
        await rec.reconcile_once(namespace or "", name)
    except Exception:
        log.exception("backup %s/%s: pass failed; retrying", namespace, name)
