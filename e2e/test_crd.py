"""The KVCluster CRD on the real API server, driven by the real kubectl (no operator running):
it installs and is Established, its structural schema fills in the defaults the operator
expects, the printer columns show, `kubectl scale` goes through the scale subresource, and the
CEL rules reject replicas below the replication factor (also through `kubectl scale`) and any
change of partitions or replicationFactor, with readable messages and no change to the object."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kvharness.cluster import LocalCluster

pytestmark = pytest.mark.e2e

CRD = Path(__file__).resolve().parent.parent / "crds" / "ringkv.io_kvclusters.yaml"


@pytest.fixture(scope="module")
def crd(cluster: LocalCluster) -> Iterator[None]:
    cluster.kubectl("apply", "-f", str(CRD))
    cluster.kubectl(
        "wait", "--for=condition=Established", "crd/kvclusters.ringkv.io", "--timeout=60s",
        timeout=70,
    )  # fmt: skip
    yield
    cluster.kubectl("delete", "-f", str(CRD), "--wait=false", check=False)


def kvc(name: str, **spec: Any) -> str:
    return json.dumps(
        {
            "apiVersion": "ringkv.io/v1alpha1",
            "kind": "KVCluster",
            "metadata": {"name": name},
            "spec": spec,
        }
    )


def get(cluster: LocalCluster, ns: str, name: str) -> dict[str, Any]:
    obj = cluster.kubectl_json("-n", ns, "get", "kvc", name)
    assert isinstance(obj, dict)
    return obj


def rejected(cluster: LocalCluster, *args: str, stdin: str | None = None) -> str:
    done = cluster.kubectl(*args, check=False, stdin=stdin)
    assert done.returncode != 0, f"kubectl {' '.join(args)} was accepted: {done.stdout}"
    return done.stderr


@pytest.mark.usefixtures("crd")
def test_crd_defaults_columns_scale_and_cel(cluster: LocalCluster, namespace: str) -> None:
    ns = ("-n", namespace)
    cluster.kubectl(*ns, "apply", "-f", "-", stdin=kvc("demo"))
    spec = get(cluster, namespace, "demo")["spec"]
    assert spec == {
        "replicas": 3,
        "partitions": 16,
        "replicationFactor": 3,
        "durability": "process",
        "paused": False,
        "storage": {"size": "1Gi", "reclaimPolicy": "retain"},
        "scheduling": {"zoneLabel": "topology.kubernetes.io/zone"},
    }
    header = cluster.kubectl(*ns, "get", "kvc").stdout.splitlines()[0].split()
    assert header == ["NAME", "REPLICAS", "READY", "PHASE", "EPOCH", "PROGRESS", "AGE"]

    err = rejected(cluster, *ns, "scale", "kvc/demo", "--replicas=2")
    assert "replicas must be at least replicationFactor" in err
    cluster.kubectl(*ns, "scale", "kvc/demo", "--replicas=5")
    assert get(cluster, namespace, "demo")["spec"]["replicas"] == 5

    err = rejected(cluster, *ns, "patch", "kvc", "demo", "--type=merge",
                   "-p", '{"spec":{"partitions":32}}')  # fmt: skip
    assert "partitions is immutable" in err
    err = rejected(cluster, *ns, "patch", "kvc", "demo", "--type=merge",
                   "-p", '{"spec":{"replicationFactor":5}}')  # fmt: skip
    assert "replicationFactor is immutable" in err
    err = rejected(cluster, *ns, "patch", "kvc", "demo", "--type=merge",
                   "-p", '{"spec":{"storage":{"size":"2Gi"}}}')  # fmt: skip
    assert "storage.size is immutable" in err
    after = get(cluster, namespace, "demo")["spec"]
    assert (after["replicas"], after["partitions"], after["replicationFactor"]) == (5, 16, 3)

    err = rejected(cluster, *ns, "apply", "-f", "-", stdin=kvc("small", replicas=2))
    assert "replicas must be at least replicationFactor" in err
    err = rejected(cluster, *ns, "apply", "-f", "-", stdin=kvc("odd", durability="never"))
    assert "durability" in err
    assert cluster.kubectl(*ns, "get", "kvc", "small", check=False).returncode != 0
