"""The embedded path a newcomer without a cluster takes: `./dev kube up` brings up the local
control plane, installs the operator with helm, applies examples/kvcluster.yaml and waits until
it is Ready, then prints the kubectl commands to try; `./dev kube status` reports; `./dev kube
down` leaves no process behind. Runs as a second cluster next to the session's one."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import prereq
import pytest
from kvharness import controlplane, procs
from kvharness.kubelet import runtime

pytestmark = pytest.mark.e2e
DEV = Path(__file__).resolve().parent.parent / "dev"


def dev(run_dir: Path, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RINGKV_KUBE_RUN_DIR": str(run_dir), "RINGKV_KUBE_TIMEOUT": "240"}
    return subprocess.run([str(DEV), *args], capture_output=True, text=True, timeout=timeout,
                          env=env, check=False)  # fmt: skip


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that name `text` (the run directory)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{proc.name}: {cmdline[:200]}")
    return found


@pytest.mark.timeout(600)
def test_dev_kube_up_status_down(tmp_path: Path) -> None:
    prereq.require_control_plane()
    run_dir = tmp_path / "kube"
    try:
        up = dev(run_dir, "kube", "up", timeout=540)
        assert up.returncode == 0, f"./dev kube up failed:\n{up.stderr[-4000:]}{up.stdout}"
        assert "kvc/demo is Ready" in up.stdout
        assert "kubectl scale kvc/demo --replicas=5" in up.stdout
        kubeconfig = up.stdout.split("export KUBECONFIG=")[1].split()[0]
        assert kubeconfig == str(run_dir / "admin.kubeconfig")
        kvc = subprocess.run(["kubectl", f"--kubeconfig={kubeconfig}", "get", "kvc", "demo",
                              "-o", "json"], capture_output=True, text=True, timeout=30,
                             check=True)  # fmt: skip
        status = json.loads(kvc.stdout)["status"]
        assert status["phase"] == "Ready"
        assert status["readyReplicas"] == 3
        shown = dev(run_dir, "kube", "status", timeout=60)
        assert shown.returncode == 0, shown.stdout + shown.stderr
        assert shown.stdout.count("running") == 4
        assert "demo" in shown.stdout
    finally:
        state = controlplane.State.load(run_dir)
        pods = runtime.recorded_pids(run_dir / "pids")
        down = dev(run_dir, "kube", "down", timeout=120)
    assert down.returncode == 0, down.stderr
    assert state is not None
    assert not [name for name, pid in state.pids.items() if procs.group_alive(pid)]
    # The pods' processes (the operator, the nodes) and anything naming the run directory.
    assert len(pods) >= 4, pods  # operator + 3 nodes were running
    assert not [pid for pid in pods if procs.group_alive(pid)]
    assert processes_mentioning(str(run_dir)) == []
