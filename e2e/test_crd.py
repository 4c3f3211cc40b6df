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

import kubernetes
import pytest
from kvharness.cluster import LocalCluster
from kvharness.procs import wait_until
from kvnode.core import plan as planning
from kvnode.core.model import PartitionMap
from kvnode.core.placement import NodeSlot, place
from kvnode.rebalance.state import RebalanceState, Status
from kvoperator import manifests
from kvoperator.kube import KubernetesApi
from kvoperator.model.names import ClusterNames
from kvoperator.model.spec import parse_spec

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
    # Wait until it is gone: the next module installs it again, and the API server refuses
    # objects of a CRD that is still terminating.
    cluster.kubectl("delete", "-f", str(CRD), "--wait=true", "--timeout=90s", timeout=100)


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
        "replacement": {"after": "10m", "maxConcurrent": 2},
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


@pytest.mark.usefixtures("crd")
def test_tls_cannot_be_turned_on_off_or_moved(cluster: LocalCluster, namespace: str) -> None:
    """spec.tls is fixed at creation (a transition rule on spec): HTTP and HTTPS nodes, or plain
    and encrypted Raft, would split a cluster mid-roll. Everything else stays changeable."""
    ns = ("-n", namespace)
    cluster.kubectl(*ns, "apply", "-f", "-", stdin=kvc("plain"))
    cluster.kubectl(*ns, "apply", "-f", "-", stdin=kvc("secure", tls={"secretName": "s-tls"}))
    for name, spec in (("plain", {"tls": {"secretName": "s-tls"}}),
                       ("secure", {}),
                       ("secure", {"tls": {"secretName": "other-tls"}})):  # fmt: skip
        err = rejected(cluster, *ns, "apply", "-f", "-", stdin=kvc(name, **spec))
        assert "tls is immutable" in err, err
    assert "tls" not in get(cluster, namespace, "plain")["spec"]
    assert get(cluster, namespace, "secure")["spec"]["tls"] == {"secretName": "s-tls"}
    # The rule does not get in the way of other changes, nor of kubectl scale.
    cluster.kubectl(*ns, "apply", "-f", "-",
                    stdin=kvc("secure", tls={"secretName": "s-tls"}, paused=True))  # fmt: skip
    cluster.kubectl(*ns, "scale", "kvc/secure", "--replicas=4")
    after = get(cluster, namespace, "secure")["spec"]
    assert (after["paused"], after["replicas"]) == (True, 4)
    err = rejected(cluster, *ns, "apply", "-f", "-", stdin=kvc("bad", tls={"secretName": ""}))
    assert "secretName" in err
    cluster.kubectl(*ns, "delete", "kvc", "plain", "secure", "--wait=false")


@pytest.mark.usefixtures("crd")
async def test_kube_adapter_on_the_api_server(cluster: LocalCluster, namespace: str) -> None:
    """``kvoperator.kube`` against the real API server, without pods (StatefulSet at 0): server-
    side apply of every owned object, the status and scale subresources, the ConfigMap state
    store, Events, and garbage collection of everything when the KVCluster is deleted."""
    cluster.kubectl("-n", namespace, "apply", "-f", "-", stdin=kvc("demo"))
    api = KubernetesApi(kubernetes.config.new_client_from_config(str(cluster.kubeconfig)))
    body = await api.get_cluster(namespace, "demo")
    assert body is not None
    names = ClusterNames("demo", namespace)
    owner = manifests.Owner("demo", body["metadata"]["uid"])
    spec = parse_spec(body["spec"], default_image="ringkv:test")
    for obj in manifests.owned_objects(spec, names, owner, replicas=0):
        await api.apply(obj)
        await api.apply(obj)  # idempotent
    sts = await api.get_statefulset(namespace, "demo")
    assert sts is not None
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    assert await api.list_pods(namespace, names.labels) == []

    await api.patch_cluster_status(
        namespace, "demo",
        {"replicas": 0, "readyReplicas": 0, "selector": names.selector, "phase": "Bootstrapping",
         "epoch": None, "conditions": []},
    )  # fmt: skip
    row = cluster.kubectl("-n", namespace, "get", "kvc", "demo", "--no-headers").stdout.split()
    assert row[3] == "Bootstrapping"
    scale = json.loads(
        cluster.kubectl(
            "get", "--raw", f"/apis/ringkv.io/v1alpha1/namespaces/{namespace}/kvclusters/demo/scale"
        ).stdout
    )
    assert scale["spec"]["replicas"] == 3
    assert scale["status"]["selector"] == names.selector

    nodes = [names.node(i) for i in range(3)]
    replicas = place([NodeSlot(n.node_id) for n in nodes], partitions=4, replication=3)
    pmap = PartitionMap.build(epoch=1, nodes=nodes, replicas=replicas, replication=3)
    plan = planning.plan_migration(pmap.replicas, pmap.replicas)
    state = RebalanceState(Status.DONE, pmap, pmap, plan)
    store = api.state_store(names, owner)
    store.save(state)
    assert store.load() == state

    raft = manifests.raft_secret(names, owner, "first")
    assert await api.create_secret(raft)
    assert not await api.create_secret(manifests.raft_secret(names, owner, "second"))
    kept = await api.get_secret(namespace, names.raft_secret)
    assert kept is not None
    assert kept["data"]["password"] == "Zmlyc3Q="  # base64("first"): never overwritten

    await api.emit_event(body, reason="E2eCheck", message="hello from the adapter")
    events = cluster.kubectl_json("-n", namespace, "get", "events")
    assert any(e["reason"] == "E2eCheck" for e in events["items"])

    cluster.kubectl("-n", namespace, "delete", "kvc", "demo", "--wait=true", timeout=90)

    def collected() -> bool:
        left = cluster.kubectl(
            "-n", namespace, "get", "statefulset,service,pdb,configmap,secret", "-l",
            "app.kubernetes.io/instance=demo", "-o", "name",
        ).stdout.split()  # fmt: skip
        return not left

    wait_until(collected, timeout=60, what="owned objects garbage-collected")
