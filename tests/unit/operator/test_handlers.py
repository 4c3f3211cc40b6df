"""The kopf wiring: the daemon runs the cluster's loop until kopf stops it; events only nudge."""

from __future__ import annotations

import asyncio
import types

import pytest
from kvoperator import handlers

from tests.unit.operator.harness import SETTINGS, Harness

pytestmark = pytest.mark.timeout(30)


class Stopped:
    """Stands in for ``kopf.DaemonStopped``: truthy once the daemon must stop."""

    def __init__(self) -> None:
        self.flag = False

    def __bool__(self) -> bool:
        return self.flag


async def test_daemon_drives_the_cluster_and_event_nudges_it() -> None:
    h = Harness({"replicas": 3, "partitions": 4})
    shared = handlers.Shared(settings=SETTINGS, kube=h.kube, nodes=h.nodes, metrics=h.metrics)
    memo = types.SimpleNamespace(shared=shared)
    stopped = Stopped()
    daemon = asyncio.create_task(
        handlers.drive(namespace="ns", name="demo", stopped=stopped, memo=memo)  # type: ignore[arg-type]
    )
    try:
        async with asyncio.timeout(20):
            while h.status.get("phase") != "Ready":
                h.kube.run_controllers(ready=h.nodes.ready)
                await handlers.nudge(namespace="ns", name="demo", memo=memo)
                await asyncio.sleep(0.01)
        assert set(shared.reconcilers) == {("ns", "demo")}
    finally:
        stopped.flag = True
        await handlers.nudge(namespace="ns", name="demo", memo=memo)
        await asyncio.wait_for(daemon, 5)
    assert shared.reconcilers == {}  # the daemon cleaned up after itself
    await handlers.nudge(namespace="ns", name="demo", memo=memo)  # e.g. the DELETED event
    assert shared.reconcilers == {}
    assert h.errors() == 0


async def test_startup_configures_kopf_standalone_with_annotation_storage() -> None:
    import dataclasses

    import kopf

    h = Harness({})
    settings = dataclasses.replace(SETTINGS, metrics_port=0)
    shared = handlers.Shared(settings=settings, kube=h.kube, nodes=h.nodes, metrics=h.metrics)
    ks = kopf.OperatorSettings()
    await handlers.configure(settings=ks, memo=types.SimpleNamespace(shared=shared))  # type: ignore[arg-type]
    assert ks.peering.standalone is True
    assert isinstance(ks.persistence.progress_storage, kopf.AnnotationsProgressStorage)
    assert ks.persistence.finalizer == "ringkv.io/operator"
