"""Unit tests of the process kubelet's restart decisions, pod status, volumes and hosts files.

Marked `e2e` only because CI runs e2e/ with `-m e2e`; no cluster or process is involved.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from kvharness.kubelet import events, runtime, volumes
from kvharness.kubelet.runtime import STAGING, Mount, mount_script
from kvharness.kubelet.status import (
    ContainerState,
    Terminated,
    backoff_delay,
    pod_phase,
    pod_status,
    should_restart,
)
from kvharness.netplan import Slot

pytestmark = pytest.mark.e2e

RUNNING = ContainerState("c", "img", running_since=10.0, pid=42, ready=True, started=True)
EXITED_OK = ContainerState("c", "img", terminated=Terminated(0, 1.0, 2.0))
EXITED_BAD = ContainerState("c", "img", terminated=Terminated(1, 1.0, 2.0))
BACKING_OFF = ContainerState(
    "c", "img", last_terminated=Terminated(1, 1.0, 2.0), waiting_reason="CrashLoopBackOff"
)
CREATING = ContainerState("c", "img")


@pytest.mark.parametrize(
    ("policy", "code", "restart"),
    [
        ("Always", 0, True),
        ("Always", 1, True),
        ("OnFailure", 0, False),
        ("OnFailure", 137, True),
        ("Never", 1, False),
    ],
)
def test_should_restart(policy: str, code: int, restart: bool) -> None:
    assert should_restart(policy, code) is restart


def test_backoff_is_immediate_then_doubles_to_cap() -> None:
    delays = [backoff_delay(n, base=1.0, cap=10.0) for n in range(7)]
    assert delays == [0.0, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


@pytest.mark.parametrize(
    ("policy", "containers", "phase"),
    [
        ("Always", [CREATING], "Pending"),
        ("Always", [RUNNING, CREATING], "Pending"),
        ("Always", [RUNNING], "Running"),
        ("Always", [BACKING_OFF], "Running"),
        ("Always", [EXITED_OK], "Running"),
        ("Never", [EXITED_OK], "Succeeded"),
        ("Never", [EXITED_BAD], "Failed"),
        ("Never", [EXITED_OK, EXITED_BAD], "Failed"),
        ("OnFailure", [EXITED_OK], "Succeeded"),
        ("OnFailure", [EXITED_BAD], "Running"),
        ("Never", [RUNNING, EXITED_BAD], "Running"),
    ],
)
def test_pod_phase_matches_kubelet_get_phase(
    policy: str, containers: list[ContainerState], phase: str
) -> None:
    assert pod_phase(policy, containers) == phase


def _pod(conditions: list[dict[str, Any]] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "namespace": "n"},
        "spec": {"restartPolicy": "Always", **spec},
        "status": {"conditions": conditions or []},
    }


def _conds(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status["conditions"]}


def test_status_ready_pod() -> None:
    st = pod_status(
        _pod(), [RUNNING], pod_ip="127.0.1.1", host_ip="127.0.0.1", start_time=0, now=60
    )
    assert st["phase"] == "Running"
    assert (st["podIP"], st["podIPs"], st["hostIP"]) == (
        "127.0.1.1",
        [{"ip": "127.0.1.1"}],
        "127.0.0.1",
    )
    conds = _conds(st)
    assert conds["Ready"]["status"] == conds["ContainersReady"]["status"] == "True"
    assert conds["Ready"]["lastTransitionTime"] == "1970-01-01T00:01:00Z"
    cs = st["containerStatuses"][0]
    assert cs["ready"]
    assert cs["started"]
    assert cs["state"] == {"running": {"startedAt": "1970-01-01T00:00:10Z"}}
    assert cs["containerID"] == "process://42"


def test_status_keeps_transition_time_until_status_changes() -> None:
    old = [{"type": "Ready", "status": "True", "lastTransitionTime": "old"}]
    same = pod_status(_pod(old), [RUNNING], pod_ip="i", host_ip="h", start_time=0, now=99)
    assert _conds(same)["Ready"]["lastTransitionTime"] == "old"
    changed = pod_status(_pod(old), [CREATING], pod_ip="i", host_ip="h", start_time=0, now=99)
    ready = _conds(changed)["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "ContainersNotReady")
    assert ready["lastTransitionTime"] != "old"


def test_status_readiness_gates_and_crash_loop() -> None:
    pod = _pod(readinessGates=[{"conditionType": "example.com/gate"}])
    st = pod_status(pod, [RUNNING], pod_ip="i", host_ip="h", start_time=0, now=1)
    assert _conds(st)["ContainersReady"]["status"] == "True"
    assert _conds(st)["Ready"]["status"] == "False"
    st = pod_status(_pod(), [BACKING_OFF], pod_ip="i", host_ip="h", start_time=0, now=1)
    cs = st["containerStatuses"][0]
    assert cs["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert cs["lastState"]["terminated"]["exitCode"] == 1
    assert cs["lastState"]["terminated"]["reason"] == "Error"


def test_completed_pod_is_not_ready() -> None:
    pod = _pod(restartPolicy="Never")
    st = pod_status(pod, [EXITED_OK], pod_ip="i", host_ip="h", start_time=0, now=1)
    assert st["phase"] == "Succeeded"
    assert _conds(st)["Ready"]["reason"] == "PodCompleted"
    assert st["containerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"


# ---- addresses, volumes, hosts -------------------------------------------------------
def test_pod_ips_are_distinct_loopback_addresses_per_slot() -> None:
    blocks = [[Slot(k).pod_ip(i) for i in range(16 * 254)] for k in range(14)]
    everything = [ip for block in blocks for ip in block]
    assert len(set(everything)) == len(everything)  # no two slots or pods share an address
    assert blocks[0][0] == "127.0.16.1"
    assert blocks[13][-1] == "127.0.239.254"
    assert all(ip.startswith("127.0.") and not ip.endswith((".0", ".255")) for ip in everything)
    hosts = {Slot(k).host_ip for k in range(14)}
    assert len(hosts) == 14
    assert all(h.startswith("127.0.0.") and h != "127.0.0.1" for h in hosts)
    with pytest.raises(ValueError, match="outside"):
        Slot(0).pod_ip(16 * 254)


def test_mount_script_orders_parents_first_and_execs() -> None:
    script = mount_script(
        [Mount(Path("/h/b"), "/data/sub", read_only=True), Mount(Path("/h/a"), "/data")],
        hosts_file=Path("/h/hosts"),
        hostname="web-0",
        workdir="/data",
    )
    lines = script.splitlines()
    s = STAGING
    # Every source is staged before any target is mounted (a target may hide a source) ...
    staged = [lines.index(f"mount --bind /h/a {s}/0"), lines.index(f"mount --bind /h/b {s}/1"),
              lines.index(f"mount --bind /h/hosts {s}/hosts")]  # fmt: skip
    targets = [
        lines.index(f"mount --bind {s}/0 /data"),
        lines.index(f"mount --bind {s}/1 /data/sub"),
    ]
    assert max(staged) < min(targets)
    # ... then targets go parents first, read-only where asked, and the staging is dropped.
    assert targets[0] < targets[1]
    assert "mount -o remount,bind,ro /data/sub" in lines
    assert f"mount --bind {s}/hosts /etc/hosts" in lines
    assert lines.index(f"umount -l {s}") > max(targets)
    assert lines[-1] == 'exec "$@"'


def _sts_pod(name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ns"},
        "spec": {"hostname": name, "subdomain": "web"},
    }


def test_dns_records_follow_headless_service_rules() -> None:
    headless = {"spec": {"clusterIP": "None"}}
    pods = [(_sts_pod("web-0"), "127.0.1.1", True), (_sts_pod("web-1"), "127.0.1.2", False)]
    records = volumes.dns_records(pods, lambda key: headless if key == "ns/web" else None)
    assert records == [("127.0.1.1", "web-0.web.ns.svc.cluster.local", "web-0")]
    publish = {"spec": {"clusterIP": "None", "publishNotReadyAddresses": True}}
    assert len(volumes.dns_records(pods, lambda _: publish)) == 2
    assert volumes.dns_records(pods, lambda _: {"spec": {"clusterIP": "10.0.0.5"}}) == []
    assert volumes.dns_records(pods, lambda _: None) == []


def test_hosts_content_has_self_and_peers() -> None:
    peers = [("127.0.1.1", "web-0.web.ns.svc.cluster.local", "web-0")]
    text = volumes.hosts_content(_sts_pod("web-1"), "127.0.1.2", peers)
    assert "127.0.1.2\tweb-1.web.ns.svc.cluster.local\tweb-1" in text
    assert "127.0.1.1\tweb-0.web.ns.svc.cluster.local\tweb-0" in text
    assert text.startswith("127.0.0.1\tlocalhost")


def test_prepare_volumes(tmp_path: Path) -> None:
    pod = {
        "metadata": {"name": "p", "namespace": "n"},
        "spec": {
            "volumes": [
                {"name": "data", "persistentVolumeClaim": {"claimName": "c"}},
                {"name": "scratch", "emptyDir": {}},
                {
                    "name": "cfg",
                    "configMap": {"name": "cm", "items": [{"key": "a", "path": "x/a.conf"}]},
                },
                {"name": "sec", "secret": {"secretName": "s"}},
            ]
        },
    }
    claim_dir = tmp_path / "claim"
    dirs = volumes.prepare(
        pod,
        pod_dir=tmp_path / "pod",
        token=lambda pod, src: "unused",
        claim_path=lambda c: claim_dir if c == "c" else None,
        config_maps=lambda n: {"data": {"a": "A", "b": "B"}},
        secrets=lambda n: {"data": {"pw": "czNjcmV0"}},
    )
    assert dirs["data"] == claim_dir
    assert dirs["scratch"].is_dir()
    assert (dirs["cfg"] / "x" / "a.conf").read_text() == "A"
    assert not (dirs["cfg"] / "b").exists()
    assert (dirs["sec"] / "pw").read_text() == "s3cret"
    mounts = volumes.container_mounts(
        {"volumeMounts": [{"name": "data", "mountPath": "/d", "subPath": "sub"}]}, dirs
    )
    assert mounts == [Mount(claim_dir / "sub", "/d", False)]
    with pytest.raises(volumes.NotReadyYet):
        volumes.prepare(
            pod, pod_dir=tmp_path / "p2", claim_path=lambda c: None, token=lambda p, s: "",
            config_maps=lambda n: None, secrets=lambda n: None,
        )  # fmt: skip


# What ServiceAccount admission adds to every pod (kube-apiserver 1.33), verbatim.
KUBE_API_ACCESS = {
    "name": "kube-api-access-x7k2p",
    "projected": {
        "defaultMode": 420,
        "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt",
                           "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace",
                                        "fieldRef": {"apiVersion": "v1",
                                                     "fieldPath": "metadata.namespace"}}]}},
        ],
    },
}  # fmt: skip


def test_projected_service_account_volume(tmp_path: Path) -> None:
    pod = {
        "metadata": {"name": "p", "namespace": "team-a", "uid": "u1"},
        "spec": {"serviceAccountName": "reader", "volumes": [KUBE_API_ACCESS]},
    }
    asked: list[tuple[str, int]] = []

    def token(p: dict[str, Any], src: dict[str, Any]) -> str:
        asked.append((p["spec"]["serviceAccountName"], src["expirationSeconds"]))
        return "eyJtoken"

    cms = {"kube-root-ca.crt": {"data": {"ca.crt": "-----BEGIN CERTIFICATE-----\n"}}}
    dirs = volumes.prepare(
        pod, pod_dir=tmp_path, token=token, claim_path=lambda c: None,
        config_maps=cms.get, secrets=lambda n: None,
    )  # fmt: skip
    d = dirs["kube-api-access-x7k2p"]
    assert sorted(p.name for p in d.iterdir() if not p.name.startswith("..")) == [
        "ca.crt", "namespace", "token"
    ]  # fmt: skip
    assert (d / "token").read_text() == "eyJtoken"
    assert (d / "namespace").read_text() == "team-a"
    assert (d / "ca.crt").read_text().startswith("-----BEGIN CERTIFICATE")
    assert all((d / f).stat().st_mode & 0o777 == 0o644 for f in ("token", "ca.crt", "namespace"))
    assert asked == [("reader", 3607)]
    # The CA ConfigMap is published by the controller manager shortly after a namespace is
    # created: until then the pod waits (ContainerCreating), as on a real node.
    with pytest.raises(volumes.NotReadyYet, match=r"kube-root-ca\.crt"):
        volumes.prepare(
            pod, pod_dir=tmp_path / "again", token=token, claim_path=lambda c: None,
            config_maps=lambda n: None, secrets=lambda n: None,
        )  # fmt: skip


def test_secret_volumes_are_refreshed_atomically(tmp_path: Path) -> None:
    """The kubelet's AtomicWriter layout: files in a timestamped directory, ``..data`` pointing
    at it, one symlink per key; an update swaps ``..data`` in one rename, so a reader never
    mixes versions; a gone key's link goes, a deleted Secret keeps the last content."""
    pod = {"metadata": {"name": "p", "namespace": "n"},
           "spec": {"volumes": [{"name": "tls", "secret": {"secretName": "s",
                                                           "defaultMode": 0o444}}]}}  # fmt: skip
    store: dict[str, Any] = {"s": {"data": {"tls.crt": "b2xk", "tls.key": "b2xkaw=="}}}
    dirs = volumes.prepare(
        pod, pod_dir=tmp_path, token=lambda p, s: "", claim_path=lambda c: None,
        config_maps=lambda n: None, secrets=store.get,
    )  # fmt: skip
    d = dirs["tls"]
    assert (d / "tls.crt").read_text() == "old"
    assert os.readlink(d / "tls.crt") == "..data/tls.crt"
    first = os.readlink(d / "..data")
    assert first.startswith("..")
    assert (d / first / "tls.key").read_text() == "oldk"
    assert (d / "tls.key").stat().st_mode & 0o777 == 0o444

    def refresh() -> list[str]:
        return volumes.refresh(pod, dirs, config_maps=lambda n: None, secrets=store.get)

    assert refresh() == []  # unchanged: nothing written
    assert os.readlink(d / "..data") == first
    with open(d / "tls.crt") as held:  # a reader of the old version keeps reading it whole
        store["s"] = {"data": {"tls.crt": "bmV3"}}  # new cert, tls.key gone
        assert refresh() == ["tls"]
        assert held.read() == "old"
    assert (d / "tls.crt").read_text() == "new"
    assert os.readlink(d / "..data") != first
    assert not (d / first).exists()  # the old version is removed
    assert not (d / "tls.key").is_symlink()
    assert sorted(p.name for p in d.iterdir() if not p.name.startswith("..")) == ["tls.crt"]
    del store["s"]
    assert refresh() == []
    assert (d / "tls.crt").read_text() == "new"


def test_write_in_place_keeps_inode(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    assert volumes.write_in_place(path, "a\n")
    inode = path.stat().st_ino
    assert not volumes.write_in_place(path, "a\n")
    assert volumes.write_in_place(path, "b\n")
    assert path.stat().st_ino == inode


def test_mount_points_are_created_and_removed_when_empty(tmp_path: Path) -> None:
    record = tmp_path / "record"
    existing = tmp_path / "existing"
    existing.mkdir()
    targets = [(str(tmp_path / "a" / "b"), True), (str(tmp_path / "f" / "file.conf"), False)]
    runtime.create_mount_points([*targets, (str(existing), True)], record)
    assert (tmp_path / "a" / "b").is_dir()
    assert (tmp_path / "f" / "file.conf").is_file()
    runtime.remove_mount_points(record)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing"]


class _FakeKube:
    def __init__(self) -> None:
        self.created: list[tuple[str, dict[str, Any]]] = []

    def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.created.append((path, body))
        return body


def test_events_name_the_pod_and_drop_quick_repeats() -> None:
    fake = _FakeKube()
    recorder = events.EventRecorder(fake, host="node-1", min_interval=10)  # type: ignore[arg-type]
    pod = {"metadata": {"name": "p", "namespace": "ns", "uid": "u"}}
    recorder.record(pod, "Unhealthy", "Readiness probe failed", warning=True, now=100)
    recorder.record(pod, "Unhealthy", "Readiness probe failed", warning=True, now=105)
    recorder.record(pod, "Started", "Started container c", warning=False, now=105)
    recorder.record(pod, "Unhealthy", "Readiness probe failed", warning=True, now=111)
    assert [b["reason"] for _, b in fake.created] == ["Unhealthy", "Started", "Unhealthy"]
    path, body = fake.created[0]
    assert path == "/api/v1/namespaces/ns/events"
    assert body["involvedObject"] == {
        "apiVersion": "v1", "kind": "Pod", "name": "p", "namespace": "ns", "uid": "u",
    }  # fmt: skip
    assert (body["type"], body["source"]) == ("Warning", {"component": "kubelet", "host": "node-1"})


def test_init_containers_gate_the_pod() -> None:
    pending_init = [ContainerState("init", "img", running_since=1.0, pid=7)]
    st = pod_status(
        _pod(), [CREATING], init_containers=pending_init, pod_ip="i", host_ip="h", start_time=0,
        now=1,
    )  # fmt: skip
    assert st["phase"] == "Pending"
    assert _conds(st)["Initialized"]["status"] == "False"
    assert st["containerStatuses"][0]["state"]["waiting"]["reason"] == "PodInitializing"
    assert st["initContainerStatuses"][0]["state"]["running"]
    done = [ContainerState("init", "img", terminated=Terminated(0, 1.0, 2.0))]
    st = pod_status(
        _pod(), [RUNNING], init_containers=done, pod_ip="i", host_ip="h", start_time=0, now=3
    )
    assert (st["phase"], _conds(st)["Initialized"]["status"]) == ("Running", "True")
    failed = [ContainerState("init", "img", terminated=Terminated(2, 1.0, 2.0))]
    st = pod_status(
        _pod(restartPolicy="Never"), [CREATING], init_containers=failed, pod_ip="i", host_ip="h",
        start_time=0, now=3,
    )  # fmt: skip
    assert st["phase"] == "Failed"


def test_cluster_hosts_lists_every_record() -> None:
    records = [("127.0.1.1", "web-0.web.ns.svc.cluster.local", "web-0")]
    text = volumes.cluster_hosts(records)
    assert text.splitlines()[-1] == "127.0.1.1\tweb-0.web.ns.svc.cluster.local\tweb-0"
    assert text.startswith("127.0.0.1\tlocalhost")
