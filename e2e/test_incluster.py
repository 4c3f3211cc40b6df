"""Pods as the operator will run: the image map, in-cluster API access under a ServiceAccount's
RBAC, and client Service names that resolve to ready pods only.

Everything goes through the real kube-apiserver, controller manager (serviceaccount and
root-ca-cert-publisher controllers) and the process kubelet, with the standard `kubernetes`
Python client's `load_incluster_config()` inside the pod, unchanged.
"""

from __future__ import annotations

import json
import textwrap
from typing import Any

import pytest
from kvharness import procs
from kvharness.cluster import LocalCluster

pytestmark = pytest.mark.e2e
IMAGE = "ringkv/ringkv:e2e"  # mapped to the harness's virtualenv (e2e/images.json)


def apply(cluster: LocalCluster, namespace: str, *objs: dict[str, Any]) -> None:
    doc = {"apiVersion": "v1", "kind": "List", "items": list(objs)}
    cluster.kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(doc))


def pod_json(cluster: LocalCluster, namespace: str, name: str) -> Any:
    return cluster.kubectl_json("get", "pod", name, "-n", namespace, check=False)


def wait_phase(cluster: LocalCluster, namespace: str, name: str, phase: str) -> Any:
    def probe() -> Any:
        pod = pod_json(cluster, namespace, name) or {}
        now = pod.get("status", {}).get("phase")
        if now in ("Failed", "Succeeded") and now != phase:
            raise procs.Fatal(f"pod {name} ended {now}: {logs(cluster, namespace, name)}")
        return pod if now == phase else None

    return procs.wait_until(
        probe, timeout=90, what=f"pod {namespace}/{name} {phase}", on_timeout=cluster.dump_logs
    )


def logs(cluster: LocalCluster, namespace: str, name: str) -> str:
    return cluster.kubectl("logs", name, "-n", namespace).stdout


READER = textwrap.dedent("""
    import json, os
    from kubernetes import client, config
    from kubernetes.client.rest import ApiException
    config.load_incluster_config()
    ns = open("/var/run/secrets/kubernetes.io/serviceaccount/namespace").read()
    api = client.CoreV1Api()
    out = {"namespace": ns, "host": os.environ["KUBERNETES_SERVICE_HOST"],
           "configmaps": sorted(c.metadata.name for c in api.list_namespaced_config_map(ns).items)}
    for what, call in [("secrets", lambda: api.list_namespaced_secret(ns)),
                       ("pods_kube_system", lambda: api.list_namespaced_pod("kube-system"))]:
        try:
            call()
            out[what] = 200
        except ApiException as exc:
            out[what] = exc.status
    print(json.dumps(out))
""")


@pytest.mark.timeout(180)
def test_pod_uses_incluster_config_within_its_rbac(cluster: LocalCluster, namespace: str) -> None:
    apply(
        cluster, namespace,
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "reader"}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": "read-config"},
         "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": "reader-read-config"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                     "name": "read-config"},
         "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}]},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "probe-data"},
         "data": {"k": "v"}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "reader"},
         # An emptyDir over /tmp (as the chart's operator has) must not hide the token
         # volume's source in the kubelet's run directory (regression: staged mounts).
         "spec": {"serviceAccountName": "reader", "restartPolicy": "Never",
                  "containers": [{"name": "main", "image": IMAGE,
                                  "command": ["python", "-c", READER],
                                  "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}]}],
                  "volumes": [{"name": "tmp", "emptyDir": {}}]}},
    )  # fmt: skip
    pod = wait_phase(cluster, namespace, "reader", "Succeeded")
    # ServiceAccount admission added the projected token volume; the kubelet filled it.
    vols = [v["name"] for v in pod["spec"]["volumes"]]
    assert any(v.startswith("kube-api-access-") for v in vols)
    result = json.loads(logs(cluster, namespace, "reader").strip().splitlines()[-1])
    assert result["namespace"] == namespace
    assert result["host"] == cluster.host_ip
    assert "probe-data" in result["configmaps"]
    assert "kube-root-ca.crt" in result["configmaps"]  # published by the controller manager
    assert result["secrets"] == 403  # outside its Role
    assert result["pods_kube_system"] == 403  # outside its namespace


NODE_ENV = [
    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
    {"name": "KVNODE_NODE_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    {"name": "KVNODE_DATA_DIR", "value": "/data"},
    {"name": "KVNODE_BIND_HOST", "value": "$(POD_IP)"},
    {"name": "KVNODE_HOST", "value": "$(POD_IP)"},
    {"name": "KVNODE_HTTP_PORT", "value": "7000"},
]


@pytest.mark.timeout(180)
def test_image_map_runs_containers_without_command(cluster: LocalCluster, namespace: str) -> None:
    """No `command`: the image's CMD (`python -m kvnode`) runs from the mapped installation;
    only `args`: they replace CMD and run with the installation's bin/ first on PATH."""
    apply(
        cluster, namespace,
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "node"},
         "spec": {"containers": [{
             "name": "kvnode", "image": IMAGE, "env": NODE_ENV,
             "volumeMounts": [{"name": "data", "mountPath": "/data"}],
             "readinessProbe": {"httpGet": {"path": "/healthz", "port": 7000},
                                "periodSeconds": 1}}],
             "volumes": [{"name": "data", "emptyDir": {}}]}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "args-only"},
         "spec": {"restartPolicy": "Never", "containers": [{
             "name": "main", "image": IMAGE,
             "args": ["python", "-c", "import os, sys; print(sys.prefix, os.getcwd())"]}]}},
    )  # fmt: skip
    cluster.kubectl("wait", "--for=condition=Ready", "pod/node", "-n", namespace,
                    "--timeout=90s")  # fmt: skip
    assert "kvnode" in logs(cluster, namespace, "node")
    wait_phase(cluster, namespace, "args-only", "Succeeded")
    prefix, cwd = logs(cluster, namespace, "args-only").split()
    assert prefix == cluster.image_root  # the mapped root's python, not the system one
    assert cwd == "/home/ringkv"  # the image's WORKDIR


SERVER = "cd /srv && exec python3 -m http.server 8088 --bind $(POD_IP)"
RESOLVER = textwrap.dedent("""
    import socket, time, urllib.request
    while True:
        for name in ("echo", "echo.{ns}.svc.cluster.local"):
            try:
                ip = socket.gethostbyname(name)
                body = urllib.request.urlopen(f"http://{{name}}:8088/id", timeout=2).read()
                print(name, ip, body.decode().strip(), flush=True)
            except OSError as exc:
                print(name, "none", type(exc).__name__, flush=True)
        time.sleep(0.3)
""")


def _echo_pod(name: str, *, ready: bool) -> dict[str, Any]:
    """An HTTP server answering /id with its name; `ready=False` probes a path it lacks."""
    script = f"mkdir -p /srv && echo {name} > /srv/id && " + SERVER
    probe_path = "/id" if ready else "/never"
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "echo"}},
        "spec": {"containers": [{
            "name": "http", "image": "python:3.11-slim", "command": ["sh", "-c", script],
            "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
            "volumeMounts": [{"name": "srv", "mountPath": "/srv"}],
            "readinessProbe": {"httpGet": {"path": probe_path, "port": 8088},
                               "periodSeconds": 1}}],
            "volumes": [{"name": "srv", "emptyDir": {}}]},
    }  # fmt: skip


@pytest.mark.timeout(240)
def test_client_service_name_follows_ready_pods(cluster: LocalCluster, namespace: str) -> None:
    ports = [{"port": 8088, "targetPort": 8088}]  # no kube-proxy: port == targetPort
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "echo"},
           "spec": {"selector": {"app": "echo"}, "ports": ports}}  # fmt: skip
    client = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client"},
              "spec": {"containers": [{"name": "c", "image": "python:3.11-slim",
                                       "command": ["python3", "-c",
                                                   RESOLVER.format(ns=namespace)]}]}}  # fmt: skip
    apply(cluster, namespace, svc, client, _echo_pod("unready", ready=False))
    wait_phase(cluster, namespace, "client", "Running")

    def last_lines() -> dict[str, str]:
        seen: dict[str, str] = {}
        for line in logs(cluster, namespace, "client").splitlines():
            name, _, rest = line.partition(" ")
            seen[name] = rest
        return seen

    def answers(expected: str | None) -> bool:
        seen = last_lines()
        want = [f"{ip} {expected}" for ip in ips.values()] if expected else []
        for name in ("echo", f"echo.{namespace}.svc.cluster.local"):
            rest = seen.get(name, "")
            if expected is None and not rest.startswith("none"):
                return False
            if expected is not None and rest not in want:
                return False
        return True

    ips: dict[str, str] = {}
    # Only a never-ready pod: the name must not resolve at all.
    procs.wait_until(lambda: answers(None), timeout=30, what="no address while none is ready")
    apply(cluster, namespace, _echo_pod("ready-a", ready=True))
    cluster.kubectl("wait", "--for=condition=Ready", "pod/ready-a", "-n", namespace,
                    "--timeout=60s")  # fmt: skip
    ips["ready-a"] = pod_json(cluster, namespace, "ready-a")["status"]["podIP"]
    procs.wait_until(lambda: answers("ready-a"), timeout=30, what="echo -> ready-a",
                     on_timeout=lambda: print(last_lines()))  # fmt: skip
    unready_ip = pod_json(cluster, namespace, "unready")["status"]["podIP"]
    assert unready_ip not in logs(cluster, namespace, "client")
    # The ready pod goes away: the name follows to the next ready pod, never the unready one.
    cluster.kubectl("delete", "pod", "ready-a", "-n", namespace, "--wait=true", "--timeout=60s")
    procs.wait_until(lambda: answers(None), timeout=30, what="no address after ready-a left")
    apply(cluster, namespace, _echo_pod("ready-b", ready=True))
    cluster.kubectl("wait", "--for=condition=Ready", "pod/ready-b", "-n", namespace,
                    "--timeout=60s")  # fmt: skip
    ips = {"ready-b": pod_json(cluster, namespace, "ready-b")["status"]["podIP"]}
    procs.wait_until(lambda: answers("ready-b"), timeout=30, what="echo -> ready-b")
    assert unready_ip not in logs(cluster, namespace, "client")
