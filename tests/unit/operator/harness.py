"""Drives a ``Reconciler`` against the fakes: one reconcile pass, then one controller step."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from kvnode.rebalance.executor import Options
from kvoperator.metrics import OperatorMetrics
from kvoperator.reconcile.reconciler import Reconciler
from kvoperator.settings import OperatorSettings
from prometheus_client import CollectorRegistry

from tests.unit.operator.builders import NAMES
from tests.unit.operator.fakes import FakeKube, FakeNodes

SETTINGS = OperatorSettings(
    busy_interval_s=0.01, reconcile_interval_s=0.05, retry_after_failure_s=0.5
)
FAST = Options(
    max_concurrent=3,
    step_timeout_s=2.0,
    seed_timeout_s=1.0,
    poll_interval_s=0.005,
    call_timeout_s=0.2,
    backoff_initial_s=0.005,
    backoff_max_s=0.05,
)


class Harness:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.kube = FakeKube()
        self.kube.create_cluster(NAMES.name, NAMES.namespace, {"image": "ringkv:test", **spec})
        self.nodes = FakeNodes(self.kube, NAMES)
        self.registry = CollectorRegistry()
        self.metrics = OperatorMetrics(self.registry)
        self.rec = self.new_reconciler()
        self.led_when_deleted: dict[str, list[int]] = {}  # pod -> partitions it led then
        self.kube.on_delete_pod = self._record_leaderships

    def _record_leaderships(self, pod: str) -> None:
        groups = {} if self.nodes.cluster is None else self.nodes.cluster.groups
        self.led_when_deleted[pod] = [p for p, g in groups.items() if g.leader == pod]

    def new_reconciler(self) -> Reconciler:
        """What a freshly started operator builds: nothing carried over in memory."""
        return Reconciler(
            kube=self.kube,
            nodes=self.nodes,
            settings=SETTINGS,
            metrics=self.metrics,
            namespace=NAMES.namespace,
            name=NAMES.name,
            rebalance_options=FAST,
        )

    @property
    def status(self) -> dict[str, Any]:
        return dict(self.kube.cluster().get("status") or {})

    def sample(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(
            name, {"namespace": NAMES.namespace, "cluster": NAMES.name, **labels}
        )

    def errors(self) -> float:
        return self.sample("ringkv_operator_reconciles_total", result="error") or 0.0

    async def step(self) -> None:
        await self.rec.safe_pass()
        self.kube.run_controllers(ready=self.nodes.ready)
        await asyncio.sleep(0.005)

    async def until(self, what: str, pred: Callable[[], bool], *, passes: int = 600) -> None:
        for _ in range(passes):
            await self.step()
            if pred():
                return
        raise AssertionError(
            f"{what}: not reached after {passes} passes; status {self.status}; "
            f"events {self.kube.events[-8:]}"
        )

    def converged(self) -> bool:
        runner = self.rec.runner
        return self.status.get("phase") == "Ready" and not (runner and runner.busy)

    async def ready(self) -> None:
        await self.until("phase Ready", self.converged)
