"""StatefulSet lifecycle on the real control plane, driven by the real kubectl (issue #3).

3 replicas with volumeClaimTemplates and a readiness probe -> scale to 5 -> delete a pod and see
it come back with the same volume contents (and a new pod IP) -> scale down -> delete everything
and see garbage collection (pods, claims via the retention policy, volumes, the namespace) finish.
The container is a tiny Python HTTP server that keeps an identity file on its volume.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
import urllib.request
from typing import Any

import pytest
from kvharness.cluster import LocalCluster
from kvharness.procs import wait_until

pytestmark = pytest.mark.e2e

SERVER = textwrap.dedent(
    """
    import http.server, json, os, pathlib, socket, sys, uuid
    ident = pathlib.Path("/data/identity")
    if not ident.exists():  # first boot of this claim: remember who created it
        ident.write_text(os.environ["POD_NAME"] + ":" + uuid.uuid4().hex)
    boots = pathlib.Path("boots")  # relative: workingDir is /data
    boots.write_text(str(int(boots.read_text() or 0) + 1) if boots.exists() else "1")

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path.startswith("/resolve/"):
                body = socket.gethostbyname(self.path.split("/", 2)[2])
            elif self.path == "/state":
                body = json.dumps({"identity": ident.read_text(), "boots": boots.read_text(),
                                   "env": dict(os.environ), "argv": sys.argv,
                                   "hostname": socket.gethostname(), "cwd": os.getcwd()})
            else:
                body = "ok"
            self.send_response(200); self.end_headers(); self.wfile.write(body.encode())
        def log_message(self, *args):
            pass

    http.server.ThreadingHTTPServer((os.environ["POD_IP"], 8080), H).serve_forever()
    """
)


def manifest(replicas: int) -> str:
    """Headless Service + StatefulSet as a kubectl-appliable JSON list."""
    container: dict[str, Any] = {
        "name": "web",
        "image": "python:3-local",
        "command": ["python3", "-c", SERVER],
        "args": ["--greeting", "$(GREETING)", "$$(POD_NAME)"],
        "workingDir": "/data",
        "ports": [{"name": "http", "containerPort": 8080}],
        "env": [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "GREETING", "value": "hello-$(POD_NAME)"},
        ],
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1},
        "livenessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 2},
    }
    sts = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "web"},
        "spec": {
            "serviceName": "web",
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "persistentVolumeClaimRetentionPolicy": {
                "whenDeleted": "Delete",
                "whenScaled": "Delete",
            },
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"terminationGracePeriodSeconds": 5, "containers": [container]},
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "16Mi"}},
                    },
                }
            ],
        },
    }
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"clusterIP": "None", "selector": {"app": "web"}, "ports": [{"port": 8080}]},
    }
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": [svc, sts]})


def http_get(ip: str, path: str) -> str:
    with urllib.request.urlopen(f"http://{ip}:8080{path}", timeout=5) as resp:
        return str(resp.read().decode())


def pods(cluster: LocalCluster, ns: str) -> dict[str, Any]:
    return {
        p["metadata"]["name"]: p for p in cluster.kubectl_json("get", "pods", "-n", ns)["items"]
    }


def state(pod: dict[str, Any]) -> dict[str, Any]:
    return dict(json.loads(http_get(pod["status"]["podIP"], "/state")))


def rollout(cluster: LocalCluster, ns: str, replicas: int) -> dict[str, Any]:
    """Wait with kubectl for the StatefulSet to be rolled out with `replicas` ready pods."""
    cluster.kubectl("rollout", "status", "sts/web", "-n", ns, "--timeout=120s", timeout=130)
    expected = [f"web-{i}" for i in range(replicas)]

    def settled() -> dict[str, Any] | None:
        # rollout status is satisfied by readyReplicas >= replicas: on scale-down wait for the
        # condemned pods to be gone too.
        status = cluster.kubectl_json("get", "sts", "web", "-n", ns)["status"]
        current = pods(cluster, ns)
        ok = status.get("replicas") == status.get("readyReplicas") == replicas
        return current if ok and sorted(current) == expected else None

    current = wait_until(
        settled, timeout=90, what=f"StatefulSet web with exactly {expected}",
        on_timeout=cluster.dump_logs,
    )  # fmt: skip
    cluster.kubectl(
        "wait", "--for=condition=Ready", "pod", "-l", "app=web", "-n", ns, "--timeout=60s",
        timeout=70,
    )  # fmt: skip
    return current


def gone(cluster: LocalCluster, ns: str, kind: str, names: list[str]) -> bool:
    """True when none of `names` of `kind` exists any more in `ns`."""
    items = cluster.kubectl_json("get", kind, "-n", ns)["items"]
    return not {i["metadata"]["name"] for i in items} & set(names)


def check_pods(cluster: LocalCluster, ns: str, current: dict[str, Any]) -> None:
    """Env, $(VAR) expansion, fieldRefs, workingDir, hostname, DNS, PVC binding, distinct IPs."""
    ips = {p["status"]["podIP"] for p in current.values()}
    assert len(ips) == len(current)
    assert all(ip.startswith("127.") for ip in ips)
    for name, pod in current.items():
        s = state(pod)
        assert s["identity"].startswith(f"{name}:")
        assert s["env"]["GREETING"] == f"hello-{name}"
        assert s["env"]["POD_NS"] == ns
        assert s["argv"][1:] == ["--greeting", f"hello-{name}", "$(POD_NAME)"]
        assert (s["hostname"], s["cwd"]) == (name, "/data")
        web0 = http_get(pod["status"]["podIP"], f"/resolve/web-0.web.{ns}.svc.cluster.local")
        assert web0 == current["web-0"]["status"]["podIP"]
    claims = cluster.kubectl_json("get", "pvc", "-n", ns)["items"]
    assert {c["metadata"]["name"]: c["status"]["phase"] for c in claims} == {
        f"data-{n}": "Bound" for n in current
    }


def check_host_dns(cluster: LocalCluster, ns: str) -> None:
    """A host process (like the operator) resolves pod names through with_cluster_dns."""
    ip = pods(cluster, ns)["web-2"]["status"]["podIP"]
    argv = cluster.with_cluster_dns(["getent", "hosts", f"web-2.web.{ns}.svc.cluster.local"])
    done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=True)
    assert done.stdout.split()[0] == ip


@pytest.mark.timeout(600)
def test_statefulset_lifecycle(cluster: LocalCluster, namespace: str) -> None:
    ns = namespace
    cluster.kubectl("apply", "-n", ns, "-f", "-", stdin=manifest(3))
    check_pods(cluster, ns, rollout(cluster, ns, 3))
    check_host_dns(cluster, ns)

    cluster.kubectl("scale", "sts/web", "-n", ns, "--replicas=5")
    check_pods(cluster, ns, rollout(cluster, ns, 5))

    before = pods(cluster, ns)["web-1"]
    before_state = state(before)
    cluster.kubectl("delete", "pod", "web-1", "-n", ns, "--timeout=60s", timeout=70)
    after = rollout(cluster, ns, 5)["web-1"]
    after_state = state(after)
    assert after["metadata"]["uid"] != before["metadata"]["uid"]
    assert after["status"]["podIP"] != before["status"]["podIP"]
    assert after_state["identity"] == before_state["identity"]
    assert int(after_state["boots"]) == int(before_state["boots"]) + 1

    cluster.kubectl("scale", "sts/web", "-n", ns, "--replicas=2")
    rollout(cluster, ns, 2)
    condemned = [f"data-web-{i}" for i in (2, 3, 4)]
    wait_until(
        lambda: gone(cluster, ns, "pvc", condemned), timeout=60,
        what="claims of scaled-down pods deleted (whenScaled: Delete)",
        on_timeout=cluster.dump_logs,
    )  # fmt: skip

    cluster.kubectl("delete", "sts/web", "svc/web", "-n", ns)
    cluster.kubectl("wait", "--for=delete", "pod", "-l", "app=web", "-n", ns, "--timeout=60s",
                    timeout=70)  # fmt: skip
    wait_until(
        lambda: gone(cluster, ns, "pvc", ["data-web-0", "data-web-1"]), timeout=60,
        what="claims garbage-collected with the StatefulSet (whenDeleted: Delete)",
        on_timeout=cluster.dump_logs,
    )  # fmt: skip
    wait_until(
        lambda: not cluster.kubectl_json("get", "pv")["items"], timeout=60,
        what="released volumes deleted", on_timeout=cluster.dump_logs,
    )  # fmt: skip
    cluster.kubectl("delete", "namespace", ns, "--timeout=90s", timeout=100)
