"""The process kubelet's behaviour seen through the real API and kubectl.

Volumes (ConfigMap, Secret, emptyDir), env from Secrets/ConfigMaps, exec probes inside the pod's
mount namespace, liveness-driven restarts past an ignored SIGTERM, restart policies and phases,
and graceful deletion with SIGKILL after the grace period.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from kvharness.cluster import LocalCluster
from kvharness.procs import wait_until

pytestmark = pytest.mark.e2e

CHECKER = """
trap '' TERM
grep -qx hello /etc/app/conf/greeting.txt
[ "$(cat /etc/sec/password)" = s3cret ] && [ "$PW" = s3cret ] && [ "$CFG_other" = x ]
touch /scratch/ok /scratch/alive
n=0; while true; do n=$((n+1)); [ $n -eq 4 ] && rm /scratch/alive; sleep 1; done
"""

PASSWORD_REF = {"name": "sec", "key": "password"}


def apply(cluster: LocalCluster, ns: str, *objects: dict[str, Any]) -> None:
    doc = json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)})
    cluster.kubectl("apply", "-n", ns, "-f", "-", stdin=doc)


def pod(name: str, command: str, *, policy: str = "Always", **extra: Any) -> dict[str, Any]:
    container = {"name": "main", "image": "none", "command": ["sh", "-c", command]}
    container.update(extra.pop("container", {}))
    spec = {"restartPolicy": policy, "containers": [container], **extra}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def get_pod(cluster: LocalCluster, ns: str, name: str) -> dict[str, Any]:
    return dict(cluster.kubectl_json("get", "pod", name, "-n", ns))


def container_status(cluster: LocalCluster, ns: str, name: str) -> dict[str, Any]:
    return dict(get_pod(cluster, ns, name)["status"]["containerStatuses"][0])


@pytest.mark.timeout(180)
def test_volumes_env_exec_probes_and_liveness_restart(
    cluster: LocalCluster, namespace: str
) -> None:
    ns = namespace
    cluster.kubectl("create", "configmap", "cfg", "-n", ns, "--from-literal=greeting=hello",
                    "--from-literal=other=x")  # fmt: skip
    cluster.kubectl(
        "create", "secret", "generic", "sec", "-n", ns, "--from-literal=password=s3cret"
    )
    checker = pod(
        "checker", CHECKER,
        terminationGracePeriodSeconds=2,
        volumes=[
            {"name": "cfg", "configMap": {"name": "cfg", "items": [
                {"key": "greeting", "path": "conf/greeting.txt"}]}},
            {"name": "sec", "secret": {"secretName": "sec"}},
            {"name": "scratch", "emptyDir": {}},
        ],
        container={
            "env": [{"name": "PW", "valueFrom": {"secretKeyRef": PASSWORD_REF}}],
            "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}],
            "volumeMounts": [
                {"name": "cfg", "mountPath": "/etc/app", "readOnly": True},
                {"name": "sec", "mountPath": "/etc/sec"},
                {"name": "scratch", "mountPath": "/scratch"},
            ],
            "readinessProbe": {"exec": {"command": ["test", "-f", "/scratch/ok"]},
                               "periodSeconds": 1},
            "livenessProbe": {"exec": {"command": ["test", "-f", "/scratch/alive"]},
                              "periodSeconds": 1, "failureThreshold": 2},
        },
    )  # fmt: skip
    apply(cluster, ns, checker)
    cluster.kubectl("wait", "--for=condition=Ready", "pod/checker", "-n", ns, "--timeout=30s")

    def restarted() -> dict[str, Any] | None:
        status = container_status(cluster, ns, "checker")
        return status if status["restartCount"] >= 1 else None

    status = wait_until(
        restarted, timeout=40, what="liveness restart", on_timeout=cluster.dump_logs
    )
    # SIGTERM is trapped, so the kubelet had to SIGKILL after the 2 s grace period.
    assert status["lastState"]["terminated"]["exitCode"] == 137
    assert status["lastState"]["terminated"]["reason"] == "Error"
    cluster.kubectl("wait", "--for=condition=Ready", "pod/checker", "-n", ns, "--timeout=30s")
    events = cluster.kubectl_json("get", "events", "-n", ns,
                                  "--field-selector=involvedObject.name=checker")  # fmt: skip
    reasons = {e["reason"] for e in events["items"]}
    assert {"Scheduled", "Started", "Unhealthy", "Killing"} <= reasons, reasons


@pytest.mark.timeout(120)
def test_restart_policies_and_phases(cluster: LocalCluster, namespace: str) -> None:
    ns = namespace
    apply(
        cluster, ns,
        pod("ok", "echo one; echo two; exit 0", policy="Never"),
        pod("bad", "exit 3", policy="Never"),
        pod("flaky", "exit 1", policy="OnFailure"),
        pod("done", "exit 0", policy="OnFailure"),
    )  # fmt: skip
    for name, phase in [("ok", "Succeeded"), ("bad", "Failed"), ("done", "Succeeded")]:
        cluster.kubectl("wait", f"--for=jsonpath={{.status.phase}}={phase}", f"pod/{name}",
                        "-n", ns, "--timeout=30s")  # fmt: skip
    assert container_status(cluster, ns, "bad")["state"]["terminated"]["exitCode"] == 3
    assert container_status(cluster, ns, "ok")["state"]["terminated"]["reason"] == "Completed"
    # kubectl logs goes apiserver -> the kubelet's /containerLogs endpoint (TLS, verified).
    assert cluster.kubectl("logs", "ok", "-n", ns).stdout == "one\ntwo\n"
    assert cluster.kubectl("logs", "ok", "-n", ns, "--tail=1").stdout == "two\n"

    def crash_looping() -> bool:
        status = container_status(cluster, ns, "flaky")
        waiting = status["state"].get("waiting", {})
        return bool(status["restartCount"] >= 2 and waiting.get("reason") == "CrashLoopBackOff")

    wait_until(crash_looping, timeout=30, what="CrashLoopBackOff", on_timeout=cluster.dump_logs)
    assert get_pod(cluster, ns, "flaky")["status"]["phase"] == "Running"


@pytest.mark.timeout(120)
def test_deletion_honours_grace_period_then_sigkill(cluster: LocalCluster, namespace: str) -> None:
    ns = namespace
    stubborn = pod("stubborn", "trap '' TERM; while true; do sleep 0.2; done",
                   terminationGracePeriodSeconds=3)  # fmt: skip
    polite = pod("polite", "sleep 1000", terminationGracePeriodSeconds=30)
    apply(cluster, ns, stubborn, polite)
    cluster.kubectl("wait", "--for=condition=Ready", "pod/stubborn", "pod/polite", "-n", ns,
                    "--timeout=30s")  # fmt: skip
    started = time.monotonic()
    cluster.kubectl("delete", "pod", "polite", "-n", ns, "--timeout=20s", timeout=30)
    assert time.monotonic() - started < 10, "SIGTERM should end `sleep` at once"
    started = time.monotonic()
    cluster.kubectl("delete", "pod", "stubborn", "-n", ns, "--timeout=30s", timeout=40)
    elapsed = time.monotonic() - started
    assert 3 <= elapsed < 15, f"deletion took {elapsed:.1f}s, expected the 3 s grace then SIGKILL"


@pytest.mark.timeout(120)
def test_pre_stop_hook_runs_before_sigterm(
    cluster: LocalCluster, namespace: str, tmp_path: Path
) -> None:
    ns = namespace
    hooked = pod(
        "hooked", "trap 'echo term >> /out/marker; exit 0' TERM; while true; do sleep 0.2; done",
        terminationGracePeriodSeconds=10,
        volumes=[{"name": "out", "hostPath": {"path": str(tmp_path)}}],
        container={
            "volumeMounts": [{"name": "out", "mountPath": "/out"}],
            "lifecycle": {"preStop": {"exec": {"command": [
                "sh", "-c", "sleep 1; echo prestop >> /out/marker"]}}},
        },
    )  # fmt: skip
    apply(cluster, ns, hooked)
    cluster.kubectl("wait", "--for=condition=Ready", "pod/hooked", "-n", ns, "--timeout=30s")
    cluster.kubectl("delete", "pod", "hooked", "-n", ns, "--timeout=30s", timeout=40)
    assert (tmp_path / "marker").read_text() == "prestop\nterm\n"


@pytest.mark.timeout(120)
def test_init_containers_run_in_order_before_the_main_container(
    cluster: LocalCluster, namespace: str
) -> None:
    ns = namespace
    scratch = {"volumeMounts": [{"name": "w", "mountPath": "/work"}]}
    steps = [
        {"name": name, "image": "none", "command": ["sh", "-c", cmd], **scratch}
        for name, cmd in [("first", "echo 1 > /work/order"), ("second", "echo 2 >> /work/order")]
    ]
    main = pod(
        "inits", "[ \"$(cat /work/order | tr -d '\\n')\" = 12 ] && touch /work/ok; sleep 1000",
        initContainers=steps, volumes=[{"name": "w", "emptyDir": {}}],
        container={**scratch, "readinessProbe": {
            "exec": {"command": ["test", "-f", "/work/ok"]}, "periodSeconds": 1}},
    )  # fmt: skip
    broken = pod("broken", "sleep 1000", policy="Never", initContainers=[
        {"name": "fail", "image": "none", "command": ["sh", "-c", "exit 2"]}])  # fmt: skip
    apply(cluster, ns, main, broken)
    cluster.kubectl("wait", "--for=condition=Ready", "pod/inits", "-n", ns, "--timeout=30s")
    cluster.kubectl("wait", "--for=jsonpath={.status.phase}=Failed", "pod/broken", "-n", ns,
                    "--timeout=30s")  # fmt: skip
    statuses = get_pod(cluster, ns, "inits")["status"]["initContainerStatuses"]
    assert [s["state"]["terminated"]["reason"] for s in statuses] == ["Completed", "Completed"]
