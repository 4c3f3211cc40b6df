"""Issue 12 on the operator side: ``spec.auth`` parsing, the pod template that mounts the
Secret, the cluster credential read from it (never echoed), the per-cluster credential of
the node client, and the reconciler using it (or reporting an unusable Secret)."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from kvoperator import manifests
from kvoperator.model import auth as model_auth
from kvoperator.model.names import ClusterNames
from kvoperator.model.spec import AuthMetrics, SpecError, parse_spec
from kvoperator.nodes import HttpNodeApi

from tests.unit.operator.builders import NAMES
from tests.unit.operator.harness import Harness

OWNER = manifests.Owner(name="demo", uid="u-1")
SECRET_TOKEN = "rkv_cluster_credential_for_tests"


def secret(**data: str) -> dict[str, Any]:
    enc = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "kv-auth"}, "data": enc}


def good_secret() -> dict[str, Any]:
    return secret(**{"tokens.json": '{"tokens": []}', "cluster-token": SECRET_TOKEN + "\n"})


def test_spec_auth_is_parsed_with_defaults() -> None:
    spec = parse_spec({"auth": {"secretName": "kv-auth"}}, default_image="i")
    assert spec.auth is not None
    assert spec.auth.secret_name == "kv-auth"
    assert spec.auth.metrics is AuthMetrics.OPEN
    assert parse_spec({}, default_image="i").auth is None
    token = parse_spec({"auth": {"secretName": "s", "metrics": "token"}}, default_image="i")
    assert token.auth is not None
    assert token.auth.metrics is AuthMetrics.TOKEN


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ({}, "secretName"),
        ({"secretName": ""}, "secretName"),
        ({"secretName": "s", "metrics": "maybe"}, "spec.auth.metrics"),
        ("kv-auth", "spec.auth: must be an object"),
    ],
)
def test_bad_spec_auth_is_named(raw: Any, problem: str) -> None:
    with pytest.raises(SpecError, match=problem):
        parse_spec({"auth": raw}, default_image="i")


def pod_of(spec_raw: dict[str, Any]) -> dict[str, Any]:
    spec = parse_spec(spec_raw, default_image="ringkv:test")
    sts = manifests.statefulset(spec, NAMES, OWNER, replicas=3)
    return dict(sts["spec"]["template"]["spec"])


def test_the_secret_is_mounted_and_named_to_the_node() -> None:
    pod = pod_of({"auth": {"secretName": "kv-auth", "metrics": "token"}})
    assert pod["volumes"] == [
        {"name": "auth", "secret": {"secretName": "kv-auth", "defaultMode": 0o444}}
    ]
    (c,) = pod["containers"]
    assert {"name": "auth", "mountPath": "/etc/ringkv/auth", "readOnly": True} in c["volumeMounts"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["KVNODE_AUTH_TOKENS_FILE"] == "/etc/ringkv/auth/tokens.json"
    assert env["KVNODE_CLUSTER_TOKEN_FILE"] == "/etc/ringkv/auth/cluster-token"
    assert env["KVNODE_AUTH_METRICS"] == "token"
    # The probes need no token: /healthz and /readyz are always open.
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert "httpHeaders" not in c["readinessProbe"]["httpGet"]


def test_no_auth_no_volume_and_a_different_config_hash() -> None:
    pod = pod_of({})
    assert "volumes" not in pod
    env = {e["name"] for e in pod["containers"][0]["env"]}
    assert not {n for n in env if "AUTH" in n or "TOKEN" in n}
    plain = parse_spec({}, default_image="i")
    secured = parse_spec({"auth": {"secretName": "kv-auth"}}, default_image="i")
    assert manifests.config_hash(plain, NAMES) != manifests.config_hash(secured, NAMES)


def test_cluster_token_from_the_secret() -> None:
    assert model_auth.cluster_token(good_secret(), name="kv-auth") == SECRET_TOKEN


@pytest.mark.parametrize(
    ("obj", "problem"),
    [
        (None, "does not exist"),
        (secret(**{"tokens.json": "{}"}), "lacks key"),
        (secret(**{"cluster-token": SECRET_TOKEN}), "lacks key"),
        (secret(**{"tokens.json": "{}", "cluster-token": f"{SECRET_TOKEN} {SECRET_TOKEN}"}),
         "exactly one token"),
        ({"data": {"tokens.json": "e30=", "cluster-token": "!!" + SECRET_TOKEN}}, "base64"),
    ],
)  # fmt: skip
def test_unusable_secrets_are_described_without_their_values(obj: Any, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as info:
        model_auth.cluster_token(obj, name="kv-auth")
    assert SECRET_TOKEN not in str(info.value)


async def test_the_node_client_uses_each_clusters_own_credential() -> None:
    api = HttpNodeApi()
    a, b = ClusterNames("a", "ns"), ClusterNames("b", "ns")
    api.use_credential(a.node_domain, "rkv_a")
    api.use_credential(b.node_domain, "rkv_b")
    assert api.token_for(a.node(0).http_url) == "rkv_a"
    assert api.token_for(b.node(2).http_url) == "rkv_b"
    assert api.token_for(ClusterNames("a", "other").node(0).http_url) is None
    assert api.token_for("http://a-peers.ns.svc.cluster.local.evil:7000") is None
    api.use_credential(a.node_domain, None)
    assert api.token_for(a.node(0).http_url) is None
    await api.close()


async def test_reconciler_hands_the_credential_to_the_node_client() -> None:
    h = Harness({"replicas": 3, "partitions": 4, "auth": {"secretName": "kv-auth"}})
    h.kube.objects[("Secret", NAMES.namespace, "kv-auth")] = good_secret()
    await h.ready()
    assert h.nodes.credentials == {NAMES.node_domain: SECRET_TOKEN}
    sts = h.kube.get("StatefulSet", NAMES.namespace, NAMES.name)
    assert sts is not None
    assert sts["spec"]["template"]["spec"]["volumes"][0]["secret"]["secretName"] == "kv-auth"
    # Auth turned off: the credential is no longer sent.
    cluster = h.kube.cluster()
    del cluster["spec"]["auth"]
    cluster["metadata"]["generation"] += 1
    await h.step()
    assert h.nodes.credentials == {}


async def test_a_missing_secret_is_reported_and_nothing_is_created() -> None:
    h = Harness({"replicas": 3, "partitions": 4, "auth": {"secretName": "kv-auth"}})
    for _ in range(3):
        await h.step()
    s = h.status
    assert s["phase"] == "Degraded"
    conds = {c["type"]: c for c in s["conditions"]}
    assert conds["Degraded"]["reason"] == "AuthSecretUnusable"
    assert "does not exist" in conds["Degraded"]["message"]
    assert h.kube.names("StatefulSet") == []
    assert "AuthSecretUnusable" in h.kube.reasons()
    h.kube.objects[("Secret", NAMES.namespace, "kv-auth")] = good_secret()
    await h.ready()
    assert h.nodes.credentials == {NAMES.node_domain: SECRET_TOKEN}
    assert all(SECRET_TOKEN not in str(e) for e in h.kube.events)
    assert SECRET_TOKEN not in str(h.status)
