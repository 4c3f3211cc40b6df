"""The operator as in production: installed by `helm install` from charts/ringkv, running as a
pod under the chart's ServiceAccount and RBAC with in-cluster configuration, reconciling a
KVCluster whose node pods run the same image (both mapped by e2e/images.json).
"""

from __future__ import annotations

import json
import time

import pytest
from kvharness import procs
from kvharness.cluster import LocalCluster

pytestmark = pytest.mark.e2e

KVCLUSTER = {
    "apiVersion": "ringkv.io/v1alpha1",
    "kind": "KVCluster",
    "metadata": {"name": "demo"},
    "spec": {"replicas": 3, "partitions": 8, "replicationFactor": 3,
             "storage": {"size": "1Gi", "reclaimPolicy": "delete"}},
}  # fmt: skip


@pytest.mark.timeout(300)
def test_chart_installed_operator_reconciles_a_kvcluster(
    cluster: LocalCluster, operator: str, namespace: str
) -> None:
    (pod,) = cluster.kubectl_json("get", "pods", "-n", operator)["items"]
    assert pod["spec"]["serviceAccountName"] == "ringkv-operator"
    assert pod["spec"]["containers"][0]["command"] == ["ringkv-operator"]
    started = time.monotonic()
    cluster.kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(KVCLUSTER))
    cluster.kubectl("wait", "-n", namespace, "kvc/demo", "--for=condition=Ready",
                    "--timeout=180s", timeout=200)  # fmt: skip
    print(f"apply -> Ready in {time.monotonic() - started:.1f}s")
    kvc = cluster.kubectl_json("get", "kvc", "demo", "-n", namespace)
    assert kvc["status"]["readyReplicas"] == 3
    sts = cluster.kubectl_json("get", "statefulset", "demo", "-n", namespace)
    assert sts["spec"]["template"]["spec"]["containers"][0]["image"].startswith("ringkv/ringkv:")
    # Deleting the KVCluster removes what the operator made for it (owner references + GC).
    cluster.kubectl("delete", "kvc", "demo", "-n", namespace, "--timeout=120s", timeout=150)
    procs.wait_until(
        lambda: not cluster.kubectl_json("get", "statefulsets,services", "-n", namespace)["items"],
        timeout=90, what="owned objects garbage-collected", on_timeout=cluster.dump_logs,
    )  # fmt: skip
