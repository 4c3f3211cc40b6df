"""Manifest builders: golden files plus the properties the node and Kubernetes rely on.

Regenerate the golden files after an intended change, then review the diff:
    RINGKV_UPDATE_GOLDEN=1 ./dev unit tests/unit/operator/test_manifests.py
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from kvoperator import manifests
from kvoperator.model.names import ClusterNames
from kvoperator.model.spec import ClusterSpec, parse_spec

GOLDEN = Path(__file__).parent / "golden"
OWNER = manifests.Owner(name="demo", uid="0f0e0d0c-0000-4000-8000-000000000001")
NAMES = ClusterNames("demo", "prod")

SPECS: dict[str, dict[str, Any]] = {
    "default": {},
    "full": {
        "replicas": 5,
        "partitions": 64,
        "replicationFactor": 5,
        "image": "registry.example/ringkv:1.2",
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}},
        "storage": {"size": "20Gi", "storageClassName": "fast", "reclaimPolicy": "delete"},
        "durability": "fsync",
        "scheduling": {
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "kv"}],
            "topologySpreadConstraints": [
                {
                    "maxSkew": 1,
                    "topologyKey": "topology.kubernetes.io/zone",
                    "whenUnsatisfiable": "DoNotSchedule",
                    "labelSelector": {"matchLabels": {"app.kubernetes.io/instance": "demo"}},
                }
            ],
        },
    },
}


def spec(which: str) -> ClusterSpec:
    return parse_spec(SPECS[which], default_image="ringkv:0.1.0")


def render(which: str) -> str:
    s = spec(which)
    objs = manifests.owned_objects(s, NAMES, OWNER, replicas=s.replicas)
    objs.append(manifests.state_configmap(NAMES, OWNER, {"state.json": "{}"}))
    return yaml.safe_dump_all(objs, sort_keys=True)


@pytest.mark.parametrize("which", sorted(SPECS))
def test_golden(which: str) -> None:
    path = GOLDEN / f"{which}.yaml"
    text = render(which)
    if os.environ.get("RINGKV_UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert path.exists(), f"{path} missing: run with RINGKV_UPDATE_GOLDEN=1 to create it"
    assert text == path.read_text(), f"{path} differs: review, then RINGKV_UPDATE_GOLDEN=1"


def sts(which: str = "default") -> dict[str, Any]:
    s = spec(which)
    return manifests.statefulset(s, NAMES, OWNER, replicas=s.replicas)


def env(obj: dict[str, Any]) -> dict[str, Any]:
    (c,) = obj["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c["env"]}


def test_node_identity_and_address_come_from_the_pod() -> None:
    e = env(sts())
    assert e["KVNODE_NODE_ID"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert e["KVNODE_HOST"] == "$(KVNODE_NODE_ID).demo-peers.prod.svc.cluster.local"
    assert e["KVNODE_BIND_HOST"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    # the operator's NodeInfo for ordinal 2 names the same host the pod advertises
    assert NAMES.node(2).host == e["KVNODE_HOST"].replace("$(KVNODE_NODE_ID)", "demo-2")
    assert e["KVNODE_DATA_DIR"] == "/var/lib/ringkv"


def test_statefulset_shape() -> None:
    obj = sts("full")
    s = obj["spec"]
    assert s["podManagementPolicy"] == "Parallel"
    assert s["serviceName"] == "demo-peers"
    assert s["replicas"] == 5
    assert s["selector"]["matchLabels"] == NAMES.labels
    labels = s["template"]["metadata"]["labels"]
    assert NAMES.labels.items() <= labels.items()
    assert s["persistentVolumeClaimRetentionPolicy"] == {
        "whenDeleted": "Delete",
        "whenScaled": "Retain",
    }
    (claim,) = s["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "20Gi"
    assert claim["spec"]["storageClassName"] == "fast"
    (c,) = s["template"]["spec"]["containers"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["image"] == "registry.example/ringkv:1.2"
    assert env(obj)["KVNODE_DURABILITY"] == "fsync"


def test_retain_policy_keeps_volumes_when_the_cluster_is_deleted() -> None:
    policy = sts()["spec"]["persistentVolumeClaimRetentionPolicy"]
    assert policy == {"whenDeleted": "Retain", "whenScaled": "Retain"}


def test_services() -> None:
    headless = manifests.headless_service(NAMES, OWNER)
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    client = manifests.client_service(NAMES, OWNER)
    assert client["metadata"]["name"] == "demo"
    assert "publishNotReadyAddresses" not in client["spec"]
    assert client["spec"]["selector"] == NAMES.labels


@pytest.mark.parametrize(
    ("rf", "max_unavailable"), [(1, 0), (2, 0), (3, 1), (4, 1), (5, 2), (6, 2), (7, 3)]
)
def test_pdb_keeps_every_quorum(rf: int, max_unavailable: int) -> None:
    s = parse_spec({"replicationFactor": rf, "replicas": rf}, default_image="x")
    assert manifests.pdb(s, NAMES, OWNER)["spec"]["maxUnavailable"] == max_unavailable


@pytest.mark.parametrize("rf", range(1, 8))
def test_pdb_worst_case_eviction_keeps_a_quorum(rf: int) -> None:
    """Whatever pods the budget lets go, the worst case is that all of them hold a replica of
    the same partition: the replicas left must still be a majority of RF."""
    allowed = manifests.max_unavailable(rf)
    assert rf - allowed >= rf // 2 + 1
    assert rf - (allowed + 1) < rf // 2 + 1  # and the budget is not stricter than needed


def test_everything_is_owned_by_the_cluster() -> None:
    s = spec("default")
    objs = [*manifests.owned_objects(s, NAMES, OWNER, replicas=3)]
    objs.append(manifests.state_configmap(NAMES, OWNER, {}))
    for obj in objs:
        (ref,) = obj["metadata"]["ownerReferences"]
        assert ref == {
            "apiVersion": "ringkv.io/v1alpha1",
            "kind": "KVCluster",
            "name": "demo",
            "uid": OWNER.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
        assert obj["metadata"]["namespace"] == "prod"


def test_config_hash_follows_the_spec_not_the_replicas() -> None:
    a = manifests.config_hash(spec("default"), NAMES)
    assert a == manifests.config_hash(
        parse_spec({"replicas": 7}, default_image="ringkv:0.1.0"), NAMES
    )
    assert a != manifests.config_hash(parse_spec({"image": "other"}, default_image="x"), NAMES)
    assert sts()["metadata"]["annotations"][manifests.CONFIG_HASH_ANNOTATION] == a
