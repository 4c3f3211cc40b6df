"""Issue 11, "must be shown": a `kubectl drain`-style eviction of two pods at once is refused by
the PodDisruptionBudget the operator computes from the replication factor (RF 3 -> at most one
pod down, so every partition keeps 2 of its 3 replicas: a quorum).

The evictions go through the real Eviction API (`POST .../pods/<pod>/eviction`, what `kubectl
drain` calls); the PDB's status is computed by the real disruption controller of the harness's
kube-controller-manager. Both evictions are sent at the same time from two threads: the API
server serializes them on the PDB's resourceVersion, so exactly one is allowed (201) and the
other refused (429), whichever wins.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest
from kvharness import procs
from kvharness.cluster import LocalCluster
from opsupport import Kvc

pytestmark = pytest.mark.e2e
log = logging.getLogger(__name__)

KVCLUSTER = {
    "apiVersion": "ringkv.io/v1alpha1",
    "kind": "KVCluster",
    "metadata": {"name": "demo"},
    "spec": {"replicas": 3, "partitions": 8, "replicationFactor": 3},
}  # fmt: skip


@pytest.fixture
def kvc(
    cluster: LocalCluster, operator: str, namespace: str, request: pytest.FixtureRequest
) -> Iterator[Kvc]:
    kvc = Kvc(cluster, namespace)
    yield kvc
    rep = getattr(request.node, "rep_call", None)
    if rep is None or rep.failed:
        kvc.dump()


def core_api(cluster: LocalCluster) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(
        kubernetes.config.new_client_from_config(str(cluster.kubeconfig))
    )


def evict(api: kubernetes.client.CoreV1Api, ns: str, pod: str) -> int:
    """The HTTP status of one eviction request (201 allowed, 429 refused by the budget)."""
    body = kubernetes.client.V1Eviction(
        metadata=kubernetes.client.V1ObjectMeta(name=pod, namespace=ns)
    )
    try:
        api.create_namespaced_pod_eviction(pod, ns, body)
    except kubernetes.client.ApiException as exc:
        log.info("eviction of %s: %s %s", pod, exc.status, exc.body)
        return int(exc.status)
    return 201


def evict_together(api: kubernetes.client.CoreV1Api, ns: str, pods: list[str]) -> dict[str, int]:
    """Evict `pods` concurrently (as `kubectl drain` does); pod -> HTTP status."""
    results: dict[str, int] = {}
    start = threading.Barrier(len(pods))

    def one(pod: str) -> None:
        start.wait(timeout=10)
        results[pod] = evict(api, ns, pod)

    threads = [threading.Thread(target=one, args=(p,)) for p in pods]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(results) == len(pods), f"eviction requests did not all answer: {results}"
    return results


def pdb_status(kvc: Kvc) -> dict[str, Any]:
    obj = kvc.cluster.kubectl_json("-n", kvc.ns, "get", "pdb", "demo")
    assert obj["spec"]["maxUnavailable"] == 1, obj["spec"]
    status: dict[str, Any] = obj.get("status", {})
    return status


def wait_disruptions_allowed(kvc: Kvc, allowed: int) -> None:
    def check() -> bool:
        status = pdb_status(kvc)
        healthy = status.get("currentHealthy")
        return bool(healthy == 3 and status.get("disruptionsAllowed") == allowed)

    procs.wait_until(check, timeout=60, interval=0.5, what=f"pdb disruptionsAllowed={allowed}",
                     on_timeout=kvc.dump)  # fmt: skip


@pytest.mark.timeout(600)
def test_pdb_refuses_a_second_concurrent_eviction_at_rf3(
    kvc: Kvc, cluster: LocalCluster, namespace: str
) -> None:
    kvc.kubectl("apply", "-f", "-", stdin=json.dumps(KVCLUSTER))
    kvc.wait_ready(3, timeout=180)
    wait_disruptions_allowed(kvc, 1)
    api = core_api(cluster)
    uids = {p.metadata.name: p.metadata.uid for p in api.list_namespaced_pod(
        namespace, label_selector="app.kubernetes.io/component=node").items}  # fmt: skip

    results = evict_together(api, namespace, ["demo-0", "demo-1"])
    assert sorted(results.values()) == [201, 429], results
    (evicted,) = [p for p, code in results.items() if code == 201]
    (kept,) = [p for p, code in results.items() if code == 429]

    # The refused pod is untouched; while the evicted one is away, every further eviction
    # (the retry loop of `kubectl drain`) is refused too.
    pod = api.read_namespaced_pod(kept, namespace)
    assert pod.metadata.deletion_timestamp is None
    assert pod.metadata.uid == uids[kept]
    assert evict(api, namespace, "demo-2") == 429

    # The evicted pod comes back (same volume), the cluster converges, the budget reopens.
    def replaced() -> bool:
        try:
            p = api.read_namespaced_pod(evicted, namespace)
        except kubernetes.client.ApiException as exc:
            if exc.status == 404:  # deleted, not recreated yet
                return False
            raise
        return bool(p.metadata.uid != uids[evicted])

    procs.wait_until(replaced, timeout=60, interval=0.5, what=f"{evicted} recreated",
                     on_timeout=kvc.dump)  # fmt: skip
    kvc.wait_ready(3, timeout=180)
    wait_disruptions_allowed(kvc, 1)
