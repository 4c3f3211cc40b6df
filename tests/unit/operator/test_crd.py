"""The CRD's structure matches the model: every spec field the operator reads exists in the
schema with the same default, the scale subresource points at the right fields, the CEL rules
that guard immutable and impossible specs are there, and the printer columns exist."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from kvoperator.model import names
from kvoperator.model.spec import DEFAULTS

CRD = Path(__file__).resolve().parents[3] / "crds" / "ringkv.io_kvclusters.yaml"


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    return yaml.safe_load(CRD.read_text())


@pytest.fixture(scope="module")
def version(crd: dict[str, Any]) -> dict[str, Any]:
    (v,) = crd["spec"]["versions"]
    return v


def spec_schema(version: dict[str, Any]) -> dict[str, Any]:
    return version["schema"]["openAPIV3Schema"]["properties"]["spec"]


def field(version: dict[str, Any], dotted: str) -> dict[str, Any]:
    node = spec_schema(version)
    for part in dotted.split("."):
        node = node["properties"][part]
    return node


def test_names_and_version(crd: dict[str, Any], version: dict[str, Any]) -> None:
    assert crd["metadata"]["name"] == f"{names.PLURAL}.{names.GROUP}"
    assert crd["spec"]["group"] == names.GROUP
    assert crd["spec"]["names"]["kind"] == names.KIND
    assert crd["spec"]["names"]["plural"] == names.PLURAL
    assert "kvc" in crd["spec"]["names"]["shortNames"]
    assert version["name"] == names.VERSION
    assert version["served"]
    assert version["storage"]


@pytest.mark.parametrize("key", sorted(DEFAULTS))
def test_every_model_default_is_the_schema_default(version: dict[str, Any], key: str) -> None:
    assert field(version, key).get("default") == DEFAULTS[key]


@pytest.mark.parametrize(
    "key",
    [
        "image",
        "resources",
        "storage.storageClassName",
        "scheduling.affinity",
        "scheduling.tolerations",
        "scheduling.topologySpreadConstraints",
        "tls.secretName",
    ],
)
def test_fields_without_default_exist(version: dict[str, Any], key: str) -> None:
    assert "default" not in field(version, key)


def test_objects_default_to_empty_so_nested_defaults_apply(version: dict[str, Any]) -> None:
    # Not `spec`: kube-apiserver 1.33 validates a default against the CEL rules of its own
    # schema without the nested defaults, so `spec: {default: {}}` with the rule
    # `self.replicas >= self.replicationFactor` is rejected ("no such key: replicas").
    # parse_spec applies the defaults to a KVCluster without spec.
    assert "default" not in spec_schema(version)
    for obj in ("storage", "scheduling", "replacement"):
        assert field(version, obj)["default"] == {}


def test_enums_match_the_model(version: dict[str, Any]) -> None:
    assert field(version, "durability")["enum"] == ["process", "fsync"]
    assert field(version, "storage.reclaimPolicy")["enum"] == ["retain", "delete"]


def test_scale_subresource(version: dict[str, Any]) -> None:
    sub = version["subresources"]
    assert sub["status"] == {}
    assert sub["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }


def rules(node: dict[str, Any]) -> list[str]:
    return [r["rule"] for r in node.get("x-kubernetes-validations", [])]


def test_cel_rules(version: dict[str, Any]) -> None:
    replicas_rule, tls_rule = rules(spec_schema(version))
    assert replicas_rule.endswith("|| self.replicas >= self.replicationFactor")
    # A transition rule on spec (tls may be absent on either side, so not on spec.tls itself).
    assert tls_rule == (
        "has(self.tls) == has(oldSelf.tls) && (!has(self.tls) || self.tls == oldSelf.tls)"
    )
    assert rules(field(version, "partitions")) == ["self == oldSelf"]
    assert rules(field(version, "replicationFactor")) == ["self == oldSelf"]
    assert rules(field(version, "storage.size")) == ["self == oldSelf"]
    for node in (spec_schema(version), field(version, "partitions")):
        assert all(r.get("message") for r in node["x-kubernetes-validations"])


def test_printer_columns(version: dict[str, Any]) -> None:
    cols = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert cols == {
        "Replicas": ".spec.replicas",
        "Ready": ".status.readyReplicas",
        "Phase": ".status.phase",
        "Epoch": ".status.epoch",
        "Progress": ".status.progress",
        "Age": ".metadata.creationTimestamp",
    }


def test_status_schema_holds_what_the_operator_writes(version: dict[str, Any]) -> None:
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    written = {
        "replicas", "readyReplicas", "selector", "observedGeneration", "phase", "message",
        "conditions", "epoch", "rebalance", "progress", "bootstrapped",
    }  # fmt: skip
    assert written <= set(status)
    rebalance = set(status["rebalance"]["properties"])
    assert {"partitionsMoved", "partitionsTotal", "bytesMoved", "etaSeconds"} <= rebalance
    cond = status["conditions"]["items"]["properties"]
    assert {"type", "status", "reason", "message", "observedGeneration"} <= set(cond)


def test_tls_describes_the_secret_and_the_sans_it_needs(version: dict[str, Any]) -> None:
    tls = field(version, "tls")
    assert tls["required"] == ["secretName"]
    text = field(version, "tls.secretName")["description"]
    for needed in ("tls.crt", "tls.key", "ca.crt", "*.<cluster>-peers.<namespace>.svc",
                   "<cluster>.<namespace>.svc", "serverAuth"):  # fmt: skip
        assert needed in text
    assert "Immutable" in tls["description"]
