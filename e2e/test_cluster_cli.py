"""`e2e/cluster up|status|down` as a developer uses it: a second, independent cluster.

Checks that `up` prints a usable KUBECONFIG, `status` sees every process, and `down` leaves no
process behind and keeps only the logs.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import prereq
import pytest
from kvharness import controlplane, procs

pytestmark = pytest.mark.e2e
CLUSTER = Path(__file__).resolve().parent / "cluster"


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLUSTER), *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.mark.timeout(240)
def test_up_status_down(tmp_path: Path) -> None:
    prereq.require_control_plane()
    run_dir = tmp_path / "cli-cluster"
    try:
        up = run("up", "--run-dir", str(run_dir))
        assert up.returncode == 0, up.stderr
        kubeconfig = up.stdout.split("export KUBECONFIG=")[1].split()[0]
        nodes = subprocess.run(
            ["kubectl", f"--kubeconfig={kubeconfig}", "get", "nodes", "-o", "json"],
            capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
        assert [n["metadata"]["name"] for n in json.loads(nodes.stdout)["items"]] == [
            "ringkv-e2e-node"
        ]
        status = run("status", "--run-dir", str(run_dir))
        assert status.returncode == 0, status.stdout + status.stderr
        assert status.stdout.count("running") == 4
    finally:
        state = controlplane.State.load(run_dir)
        down = run("down", "--run-dir", str(run_dir))
    assert down.returncode == 0, down.stderr
    assert state is not None
    assert not [name for name, pid in state.pids.items() if procs.group_alive(pid)]
    assert sorted(p.name for p in run_dir.iterdir()) == ["logs"]
