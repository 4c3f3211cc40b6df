"""Issue 11, "must be shown": change `spec.image` under a write + strong-read load -> the
operator rolls every pod (StatefulSet `OnDelete`), one at a time, each node drained first and
undrained once its new pod caught up; no stale strong read, no acknowledged write lost, client
errors past the client's retries bounded and of the one explained kind (see the assertion).

The two tags (`ringkv/ringkv:<appVersion>` and `ringkv/ringkv:rolled`) map to the same local
install (e2e/images.json), so the roll is a real delete/recreate of each pod on its volume.
A watcher polls the node pods all along to prove at most one was away at any moment.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

import kubernetes
import pytest
import test_operator_scale as scale
from kvharness import procs
from kvharness.cluster import LocalCluster
from opsupport import NODE_LABELS, Kvc, LoadProcess, judge_client_errors, percentile

pytestmark = pytest.mark.e2e
log = logging.getLogger(__name__)

NEW_IMAGE = "ringkv/ringkv:rolled"
KVCLUSTER = {
    "apiVersion": "ringkv.io/v1alpha1",
    "kind": "KVCluster",
    "metadata": {"name": "demo"},
    "spec": {"replicas": 3, "partitions": 8, "replicationFactor": 3},
}  # fmt: skip


class PodWatch(threading.Thread):
    """Every ~0.1 s: which node pods are away (missing, terminating or not Ready)."""

    def __init__(self, cluster: LocalCluster, ns: str) -> None:
        super().__init__(daemon=True, name="pod-watch")
        self.ns = ns
        self.api = kubernetes.client.CoreV1Api(
            kubernetes.config.new_client_from_config(str(cluster.kubeconfig))
        )
        self.away: list[tuple[float, frozenset[str]]] = []
        self.errors: list[str] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                pods = self.api.list_namespaced_pod(self.ns, label_selector=NODE_LABELS).items
                ok = {
                    p.metadata.name for p in pods
                    if p.metadata.deletion_timestamp is None and any(
                        c.type == "Ready" and c.status == "True"
                        for c in (p.status.conditions or []))
                }  # fmt: skip
                gone = frozenset({"demo-0", "demo-1", "demo-2"} - ok)
                self.away.append((time.monotonic(), gone))
            except Exception as exc:  # a failed poll is recorded, the next one tries again
                self.errors.append(repr(exc))
            self._halt.wait(0.1)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=30)


def images(kvc: Kvc) -> dict[str, str]:
    pods = kvc.cluster.kubectl_json("-n", kvc.ns, "get", "pods", "-l", NODE_LABELS)["items"]
    return {p["metadata"]["name"]: p["spec"]["containers"][0]["image"] for p in pods}


@pytest.mark.timeout(900)
def test_image_change_rolls_one_pod_at_a_time_under_load(
    scenario: tuple[Kvc, LoadProcess], cluster: LocalCluster, namespace: str
) -> None:
    kvc, load = scenario
    numbers: dict[str, Any] = {}
    kvc.kubectl("apply", "-f", "-", stdin=json.dumps(KVCLUSTER))
    kvc.wait_ready(3, timeout=180)
    sts = cluster.kubectl_json("-n", namespace, "get", "statefulset", "demo")
    assert sts["spec"]["updateStrategy"] == {"type": "OnDelete"}
    old = set(images(kvc).values())
    assert NEW_IMAGE not in old
    load.fill(scale.KEYS)

    load.start(scale.KEYS)
    watch = PodWatch(cluster, namespace)
    watch.start()
    try:
        t0 = time.monotonic()
        patch = json.dumps({"spec": {"image": NEW_IMAGE}})
        kvc.kubectl("patch", "kvc", "demo", "--type", "merge", "-p", patch)

        def rolled() -> bool:
            return set(images(kvc).values()) == {NEW_IMAGE} and kvc.converged(3)

        procs.wait_until(rolled, timeout=600, interval=1, what="every pod rolled",
                         on_timeout=kvc.dump)  # fmt: skip
        scale.report(numbers, "rolling upgrade of 3 pods under load (s)",
                     round(time.monotonic() - t0, 1))  # fmt: skip
    finally:
        watch.stop()
    result = load.stop()

    worst = max((len(g) for _, g in watch.away), default=0)
    assert watch.away, f"the pod watcher saw nothing: {watch.errors[:3]}"
    assert worst <= 1, [sorted(g) for _, g in watch.away if len(g) > 1][:5]
    order = []
    for _, gone in watch.away:
        for pod in sorted(gone):
            if not order or order[-1] != pod:
                order.append(pod)
    assert sorted(set(order)) == ["demo-0", "demo-1", "demo-2"], order
    scale.report(numbers, "pods away, in order", order)
    reasons = [e["reason"] for e in kvc.events()]
    # Each pod: drained, deleted only once seen leading nothing, undrained once caught up.
    for reason in ("NodeDrained", "PodRolled", "NodeUndrained"):
        assert reasons.count(reason) >= 3, reasons

    # Zero lost acknowledged writes and no stale read (below) are asserted outright. Client
    # errors past kvload's retries: with the drain-first roll and the node's own hand-off on
    # SIGTERM none were measured (7-8 per roll before, see operator/DESIGN.md "Client errors
    # around a restarted pod"); what may remain is a write in flight on a connection the
    # stopping node closes (UnknownOutcome, its value accepted by the check either way).
    scale.report(numbers, "client errors during the roll (after retries)", len(result["errors"]))
    for err in result["errors"][:10]:
        print(f"[operator e2e] client error during the roll: {err}")
    judge_client_errors(result["errors"], at_most=2)
    assert result["stale_reads"] == [], f"stale strong reads: {result['stale_reads'][:10]}"
    scale.report(numbers, "client ops during the roll", len(result["samples"]))
    lat = [s[1] for s in result["samples"]]
    scale.report(numbers, "client p99 during the roll (ms)",
                 round(percentile(lat, 0.99) * 1000, 1))  # fmt: skip
    expected = scale.expected_values(result["acked"], result["uncertain"])
    scale._verify(load, expected, numbers, "after the roll")
