"""Issue 12, "must be shown" on Kubernetes: a KVCluster with `spec.auth` refuses an anonymous
request (401, `WWW-Authenticate: Bearer`) and accepts a token from its Secret, and the operator,
which reads the cluster credential from that Secret, still bootstraps it and scales it (every
admin call of the rebalance carries the credential; nodes forward and seed each other with it).

The Secret is what a user writes: `tokens.json` (hashes only) and `cluster-token`; the user's
own token is never stored in the cluster, only its SHA-256.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from kvharness import procs
from kvharness.cluster import LocalCluster
from kvnode.auth import tokens
from opsupport import Kvc, node_pods

pytestmark = pytest.mark.e2e
log = logging.getLogger(__name__)

PARTITIONS = 8
KVCLUSTER = {
    "apiVersion": "ringkv.io/v1alpha1",
    "kind": "KVCluster",
    "metadata": {"name": "demo"},
    "spec": {"replicas": 3, "partitions": PARTITIONS, "replicationFactor": 3,
             "auth": {"secretName": "demo-auth"}},
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


def auth_secret(cluster_token: str, writer: str) -> dict[str, Any]:
    table = {
        "tokens": [
            tokens.entry_json(name="cluster", role=tokens.Role.ADMIN, token=cluster_token),
            tokens.entry_json(name="app", role=tokens.Role.WRITE, token=writer),
        ]
    }
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "demo-auth"},
        "stringData": {"tokens.json": json.dumps(table), "cluster-token": cluster_token},
    }


def call(
    method: str, url: str, *, token: str | None = None, body: dict[str, Any] | None = None
) -> tuple[int, dict[str, str], dict[str, Any]]:
    """(status, headers, JSON body) of one request; HTTP errors are answers, not exceptions."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read())


def pod_ips(cluster: LocalCluster, ns: str) -> dict[str, str]:
    return {p["metadata"]["name"]: p["status"]["podIP"] for p in node_pods(cluster, ns)}


@pytest.mark.timeout(900)
def test_spec_auth_refuses_anonymous_accepts_the_secrets_token_and_still_scales(
    kvc: Kvc, cluster: LocalCluster, namespace: str
) -> None:
    # The API server itself refuses an unusable spec.auth.
    for bad, why in (({}, "secretName"), ({"secretName": "s", "metrics": "maybe"}, "metrics")):
        spec = {**KVCLUSTER, "spec": {**KVCLUSTER["spec"], "auth": bad}}  # type: ignore[dict-item]
        done = kvc.kubectl("apply", "--dry-run=server", "-f", "-", stdin=json.dumps(spec),
                           check=False)  # fmt: skip
        assert done.returncode != 0, f"spec.auth={bad} was accepted"
        assert why in done.stderr, done.stderr
    cluster_token, writer = tokens.new_token(), tokens.new_token()
    kvc.kubectl("apply", "-f", "-", stdin=json.dumps(auth_secret(cluster_token, writer)))
    kvc.kubectl("apply", "-f", "-", stdin=json.dumps(KVCLUSTER))
    kvc.wait_ready(3, timeout=240)  # bootstrap: the operator's map install needs the credential

    ips = pod_ips(cluster, namespace)
    pod = kvc.cluster.kubectl_json("-n", namespace, "get", "pod", "demo-0")
    mounts = pod["spec"]["containers"][0]["volumeMounts"]
    assert {"name": "auth", "mountPath": "/etc/ringkv/auth", "readOnly": True} in mounts

    base = f"http://{ips['demo-1']}:7000"
    status, headers, body = call("GET", f"{base}/v1/kv/hello")
    assert status == 401, body
    assert body["code"] == "unauthenticated"
    assert headers.get("WWW-Authenticate", "").startswith("Bearer")
    status, _, body = call("PUT", f"{base}/v1/kv/hello", body={"value": "x"})
    assert status == 401, body
    assert call("GET", f"{base}/v1/kv/hello", token=tokens.new_token())[0] == 401
    status, _, body = call("GET", f"{base}/v1/admin/partitions", token=writer)
    assert status == 403, body  # a write token is not an admin token
    assert call("GET", f"{base}/readyz")[0] == 200  # probes stay open

    written = {}
    for i in range(40):  # through one node: most keys are forwarded to their leader
        key = f"auth/{i}"
        status, _, body = call("PUT", f"{base}/v1/kv/{key}", token=writer, body={"value": str(i)})
        assert status == 200, (key, body)
        written[key] = str(i)

    kvc.kubectl("scale", "kvc/demo", "--replicas=4")
    kvc.wait_ready(4, timeout=420)  # a rebalance: seeds, member changes, digests, all admin
    ips = pod_ips(cluster, namespace)
    assert set(ips) == {"demo-0", "demo-1", "demo-2", "demo-3"}
    view_status, _, view = call("GET", f"http://{ips['demo-3']}:7000/v1/cluster", token=writer)
    assert view_status == 200, view
    assert any("demo-3" in r for r in view["map"]["replicas"]), view["map"]["replicas"]

    new = f"http://{ips['demo-3']}:7000"
    for key, value in written.items():

        def readable(key: str = key, value: str = value) -> bool:
            status, _, body = call("GET", f"{new}/v1/kv/{key}", token=writer)
            return status == 200 and body.get("value") == value

        procs.wait_until(readable, timeout=30, interval=0.5, what=f"{key} readable after scale",
                         on_timeout=kvc.dump)  # fmt: skip
    assert call("GET", f"{new}/v1/kv/auth/0")[0] == 401

    logs = cluster.kubectl("-n", "ringkv-system", "logs", "deployment/ringkv-operator",
                           "--tail=-1", check=False).stdout  # fmt: skip
    assert logs, "no operator logs to check"
    for secret in (cluster_token, writer):
        assert secret not in logs
    reasons = [e["reason"] for e in kvc.events()]
    assert "AuthSecretUnusable" not in reasons, reasons
