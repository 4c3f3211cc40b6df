"""Issue 12 (TLS) on Kubernetes: a KVCluster with `spec.tls` (and `spec.auth`) serves its API
over HTTPS only, with the certificate of a cert-manager-format Secret; the operator, which
trusts that Secret's `ca.crt`, bootstraps it (HTTPS readiness probes, map install) and scales it
3 -> 4 (every rebalance call over HTTPS) with the data intact; Raft traffic is encrypted with a
password in the `<cluster>-raft` Secret the operator made and every pod mounts. Then the
certificate is renewed in the Secret and every node serves the new one without a restart (the
kubelet's atomic volume update, the node's reload). One cluster for all of it: CI has 2 cores.

The client runs as a pod would (`with_cluster_dns`: the client Service and headless names
resolve), and calls them by name: the names are what the certificate covers.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import ssl
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from kvharness import pki, procs
from kvharness.cluster import LocalCluster
from kvnode.auth import tokens
from kvoperator.model import tls as model_tls
from kvoperator.model.names import ClusterNames
from opsupport import Kvc, LoadProcess, node_pods

pytestmark = pytest.mark.e2e
log = logging.getLogger(__name__)

PARTITIONS = 8
KEYS = 40
KVCLUSTER = {
    "apiVersion": "ringkv.io/v1alpha1",
    "kind": "KVCluster",
    "metadata": {"name": "demo"},
    "spec": {"replicas": 3, "partitions": PARTITIONS, "replicationFactor": 3,
             "tls": {"secretName": "demo-tls"}, "auth": {"secretName": "demo-auth"}},
}  # fmt: skip

# Runs in the cluster network: one JSON list of requests on stdin, one JSON list of outcomes
# ({"status", "body"} or {"error"}) on stdout. HTTP errors are answers, not failures.
CLIENT = textwrap.dedent("""
    import http.client, json, ssl, sys, urllib.error, urllib.request
    out = []
    for r in json.load(sys.stdin):
        ctx = ssl.create_default_context(cafile=r["ca"]) if r.get("ca") else None
        headers = {"Content-Type": "application/json"}
        if r.get("token"):
            headers["Authorization"] = "Bearer " + r["token"]
        data = None if r.get("body") is None else json.dumps(r["body"]).encode()
        req = urllib.request.Request(r["url"], data=data, method=r["method"], headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=10, context=ctx) as resp:
                out.append({"status": resp.status, "body": json.loads(resp.read())})
        except urllib.error.HTTPError as e:
            out.append({"status": e.code, "body": json.loads(e.read() or b"null")})
        except (OSError, http.client.HTTPException) as e:
            out.append({"error": type(e).__name__ + ": " + str(e)[:300]})
    json.dump(out, sys.stdout)
""")


# In the cluster network: the SHA-256 of the certificate each host:port on stdin presents
# (verified against the CA file argv[1]), or the error.
PEER_CERTS = textwrap.dedent("""
    import hashlib, json, socket, ssl, sys
    ctx = ssl.create_default_context(cafile=sys.argv[1])
    out = {}
    for target in json.load(sys.stdin):
        host, port = target.rsplit(":", 1)
        try:
            with socket.create_connection((host, int(port)), timeout=10) as raw:
                with ctx.wrap_socket(raw, server_hostname=host) as tls:
                    out[target] = hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest()
        except OSError as e:
            out[target] = "error: " + str(e)[:200]
    json.dump(out, sys.stdout)
""")


def in_cluster(cluster: LocalCluster, requests: list[Any], *argv: str, script: str = CLIENT) -> Any:
    cmd = cluster.with_cluster_dns([sys.executable, "-c", script, *argv])
    done = subprocess.run(cmd, input=json.dumps(requests), capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def fingerprint(pem: bytes) -> str:
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem.decode())).hexdigest()


def restarts(cluster: LocalCluster, ns: str) -> dict[str, tuple[str, int]]:
    """pod -> (uid, restart count of its node container)."""
    return {p["metadata"]["name"]: (p["metadata"]["uid"],
                                    p["status"]["containerStatuses"][0]["restartCount"])
            for p in node_pods(cluster, ns)}  # fmt: skip


def auth_secret(cluster_token: str, writer: str) -> dict[str, Any]:
    table = {"tokens": [
        tokens.entry_json(name="cluster", role=tokens.Role.ADMIN, token=cluster_token),
        tokens.entry_json(name="app", role=tokens.Role.WRITE, token=writer),
    ]}  # fmt: skip
    data = {"tokens.json": json.dumps(table), "cluster-token": cluster_token}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "demo-auth"},
            "stringData": data}  # fmt: skip


@pytest.mark.timeout(900)
def test_spec_tls_serves_https_only_encrypts_raft_scales_and_rotates(
    scenario: tuple[Kvc, LoadProcess], cluster: LocalCluster, namespace: str, tmp_path: Path
) -> None:
    kvc, _ = scenario
    names = ClusterNames("demo", namespace)
    sans = list(model_tls.required_sans(names))
    cert = pki.serving_cert(tmp_path / "pki", dns_names=sans)
    wrong = pki.serving_cert(tmp_path / "other", dns_names=sans, ca_name="someone-else")
    ca, wrong_ca = tmp_path / "ca.crt", tmp_path / "wrong-ca.crt"
    ca.write_bytes(cert.ca_crt)
    wrong_ca.write_bytes(wrong.ca_crt)
    cluster_token, writer = tokens.new_token(), tokens.new_token()
    broken = {**KVCLUSTER, "metadata": {"name": "broken"},
              "spec": {"replicas": 3, "tls": {"secretName": "no-such-secret"}}}  # fmt: skip
    for obj in (cert.secret("demo-tls"), auth_secret(cluster_token, writer), KVCLUSTER, broken):
        kvc.kubectl("apply", "-f", "-", stdin=json.dumps(obj))
    kvc.wait_ready(3, timeout=240)  # HTTPS probes, and the operator's map install over HTTPS

    # A cluster whose TLS Secret is missing: a condition and an Event, nothing created.
    def degraded() -> dict[str, Any] | None:
        obj = cluster.kubectl_json("-n", namespace, "get", "kvc", "broken")
        conds = {c["type"]: c for c in (obj.get("status") or {}).get("conditions", [])}
        return conds.get("Degraded") if "Degraded" in conds else None

    cond = procs.wait_until(degraded, timeout=60, what="broken reported", on_timeout=kvc.dump)
    assert cond["reason"] == "TlsSecretUnusable", cond
    assert "'no-such-secret' named in spec.tls does not exist" in cond["message"], cond
    left = kvc.kubectl("get", "statefulset,secret", "-o", "name").stdout.split()
    assert not [o for o in left if o.split("/")[1].startswith("broken")], left
    kvc.kubectl("delete", "kvc", "broken", "--wait=false")

    pod = cluster.kubectl_json("-n", namespace, "get", "pod", "demo-0")
    (c,) = pod["spec"]["containers"]
    assert c["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert {"name": "raft", "mountPath": "/etc/ringkv/raft", "readOnly": True} in c["volumeMounts"]
    assert {"name": "tls", "mountPath": "/etc/ringkv/tls", "readOnly": True} in c["volumeMounts"]
    raft = cluster.kubectl_json("-n", namespace, "get", "secret", "demo-raft")
    assert raft["metadata"]["ownerReferences"][0]["name"] == "demo"
    password = base64.b64decode(raft["data"]["password"]).decode()
    assert len(password) >= 43

    node_log = cluster.kubectl("-n", namespace, "logs", "demo-0").stdout
    assert "Raft traffic encrypted with the password in /etc/ringkv/raft/password" in node_log
    assert "TLS on (HTTPS only" in node_log
    assert password not in node_log

    service = f"https://demo.{namespace}.svc.cluster.local:7000"
    node1 = f"https://demo-1.{names.node_domain}:7000"
    writes = [{"method": "PUT", "url": f"{service}/v1/kv/tls/{i}", "ca": str(ca), "token": writer,
               "body": {"value": str(i)}} for i in range(KEYS)]  # fmt: skip
    probes = [
        {"method": "GET", "url": f"{node1}/v1/kv/tls/0", "ca": str(ca), "token": writer},
        {"method": "GET", "url": f"{node1}/v1/kv/tls/0", "ca": str(wrong_ca), "token": writer},
        {"method": "GET", "url": f"http://demo-1.{names.node_domain}:7000/v1/kv/tls/0",
         "token": writer},
        {"method": "GET", "url": f"{service}/v1/kv/tls/0", "ca": str(ca)},  # no token
    ]  # fmt: skip
    *written, good, bad_ca, plain, anonymous = in_cluster(cluster, writes + probes)
    assert all(w.get("status") == 200 for w in written), written  # forwarded over HTTPS too
    assert good.get("status") == 200, good
    assert good["body"]["value"] == "0", good
    assert "CERTIFICATE_VERIFY_FAILED" in bad_ca.get("error", ""), bad_ca
    assert "error" in plain or plain.get("status") == 400, plain  # no API answer over HTTP
    assert anonymous.get("status") == 401, anonymous  # TLS does not replace auth

    kvc.kubectl("scale", "kvc/demo", "--replicas=4")
    kvc.wait_ready(4, timeout=420)  # the rebalance: seeds, member changes, digests over HTTPS
    node3 = f"https://demo-3.{names.node_domain}:7000"
    reads = [{"method": "GET", "url": f"{node3}/v1/kv/tls/{i}", "ca": str(ca), "token": writer}
             for i in range(KEYS)]  # fmt: skip
    view = {"method": "GET", "url": f"{node3}/v1/cluster", "ca": str(ca), "token": writer}

    def intact() -> bool:
        *got, cluster_view = in_cluster(cluster, [*reads, view])
        hosts_demo3 = any("demo-3" in r for r in cluster_view.get("body", {})["map"]["replicas"])
        values = [g.get("body", {}).get("value") if g.get("status") == 200 else g for g in got]
        return hosts_demo3 and values == [str(i) for i in range(KEYS)]

    procs.wait_until(intact, timeout=30, interval=1.0, what="every key readable from demo-3",
                     on_timeout=kvc.dump)  # fmt: skip

    # A backup Job of a TLS cluster: https:// endpoints, only ca.crt mounted (RINGKV_CACERT).
    backup = {"apiVersion": "ringkv.io/v1alpha1", "kind": "KVClusterBackup",
              "metadata": {"name": "tls-backup"}, "spec": {"cluster": "demo"}}  # fmt: skip
    kvc.kubectl("apply", "-f", "-", stdin=json.dumps(backup))

    def backup_done() -> dict[str, Any] | None:
        obj = cluster.kubectl_json("-n", namespace, "get", "kvclusterbackup", "tls-backup")
        status = obj.get("status") or {}
        return status if status.get("phase") in ("Completed", "Failed") else None

    result = procs.wait_until(backup_done, timeout=180, interval=1.0,
                              what="backup tls-backup finished", on_timeout=kvc.dump)  # fmt: skip
    assert result["phase"] == "Completed", result
    assert result["verified"] is True
    assert result["keys"] >= KEYS
    job = cluster.kubectl_json("-n", namespace, "get", "job", result["job"])
    (jc,) = job["spec"]["template"]["spec"]["containers"]
    assert all(e.startswith("https://") for e in jc["command"][2].split(",")), jc["command"]

    # Rotation, as cert-manager renews: a new key and certificate from the same CA replace the
    # Secret's content; the kubelet swaps the volume files, the nodes reload them, no restart.
    before = restarts(cluster, namespace)
    renewed = pki.serving_cert(tmp_path / "pki", dns_names=sans, reuse_ca=True)
    assert fingerprint(renewed.tls_crt) != fingerprint(cert.tls_crt)
    kvc.kubectl("apply", "-f", "-", stdin=json.dumps(renewed.secret("demo-tls")))
    targets = [f"demo-{i}.{names.node_domain}:7000" for i in range(4)]

    def serving_renewed() -> bool:
        seen = in_cluster(cluster, targets, str(ca), script=PEER_CERTS)
        return set(seen.values()) == {fingerprint(renewed.tls_crt)}

    started = time.monotonic()
    procs.wait_until(serving_renewed, timeout=60, interval=2.0, what="every node serving the "
                     "renewed certificate", on_timeout=kvc.dump)  # fmt: skip
    log.info("every node serves the renewed certificate %.1f s after the Secret update",
             time.monotonic() - started)  # fmt: skip
    assert restarts(cluster, namespace) == before  # same pods, no container restart
    *got, _ = in_cluster(cluster, [*reads, view])  # node-to-node calls with the new certificate
    assert [g.get("body", {}).get("value") for g in got] == [str(i) for i in range(KEYS)], got
    kvc.wait_ready(4, timeout=60)  # the operator (same CA) still reaches every node

    logs = cluster.kubectl("-n", "ringkv-system", "logs", "deployment/ringkv-operator",
                           "--tail=-1", check=False).stdout  # fmt: skip
    assert logs, "no operator logs to check"
    for secret in (password, cluster_token, writer):
        assert secret not in logs
    reasons = {e["reason"]: e for e in kvc.events()}
    assert "RaftSecretCreated" in reasons, reasons
    assert "RaftSecretMissing" not in reasons, reasons
    assert reasons["TlsSecretUnusable"]["involvedObject"]["name"] == "broken"
