"""The bounded chaos subset the normal test run includes (the whole suite: ``./dev chaos``).

Each test runs the real runner (``python -m tests.chaos``) in its own namespaces on real node
processes, with a fixed seed, and asserts what the suite promises: operations were checked,
faults were injected, no linearizability violation, no lost acknowledged write, no undecided
history. A failure names the directory holding the history and the node logs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kvnode import localprocs

from tests.chaos import sandbox

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.integration,
    # Skipped on a developer machine without root; never in CI (``CI`` set), where a missing
    # prerequisite must fail the run rather than pass it silently.
    pytest.mark.skipif(
        (os.geteuid() != 0 or shutil.which("unshare") is None) and not os.environ.get("CI"),
        reason="the chaos runner needs root and unshare(1) for its namespaces",
    ),
]


def run_chaos(
    tmp_path: Path,
    scenario: str,
    *,
    duration: float,
    seed: int,
    timeout: float,
    extra: tuple[str, ...] = (),
) -> dict:
    out = tmp_path / "runs"
    report = tmp_path / "result.json"
    args = [*("--scenario", scenario, "--duration", str(duration), "--runs", "1"),
            *("--seed", str(seed), "--out", str(out), "--json", str(report), *extra)]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "tests.chaos", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert report.exists(), f"no result (exit {done.returncode}):\n{done.stderr[-4000:]}"
    (result,) = json.loads(report.read_text())
    print(done.stdout)
    assert done.returncode == (0 if result["passed"] else 1)
    return result


def assert_clean(result: dict, *, min_ops: int, min_faults: int) -> None:
    where = f"history and node logs kept in {result['kept']}"
    assert result["error"] is None, f"{result['error']} ({where})"
    assert result["violations"] == [], f"{result['violations'][:3]} ({where})"
    assert result["lost"] == [], f"{result['lost'][:3]} ({where})"
    assert result["undecided"] == [], f"{result['undecided'][:3]} ({where})"
    assert result["ops"] >= min_ops, result
    assert result["faults"] >= min_faults, result
    assert result["ok_per_s_calm"] > 0, result


@pytest.mark.timeout(150)
def test_mixed_faults_keep_histories_linearizable(tmp_path: Path) -> None:
    """Leader and follower kill -9, SIGSTOP past the election timeout, a one-node network
    partition and kill -9 of every node, chosen by the seed."""
    result = run_chaos(tmp_path, "mixed", duration=25, seed=7, timeout=140)
    assert_clean(result, min_ops=300, min_faults=2)


@pytest.mark.timeout(200)
def test_rebalance_under_faults_loses_nothing(tmp_path: Path) -> None:
    result = run_chaos(tmp_path, "rebalance", duration=12, seed=3, timeout=190)
    assert_clean(result, min_ops=300, min_faults=1)
    assert any(n.startswith("rebalance finished") for n in result["notes"]), result["notes"]


@pytest.mark.timeout(100)
def test_full_disk_on_one_node_loses_nothing(tmp_path: Path) -> None:
    result = run_chaos(tmp_path, "disk-full", duration=6, seed=5, timeout=90)
    assert_clean(result, min_ops=200, min_faults=1)
    assert any(n.startswith("disk filled") for n in result["notes"]), result["notes"]


@pytest.mark.timeout(300)
def test_the_checker_catches_stale_reads_in_a_real_history(tmp_path: Path) -> None:
    """Self-test of the whole pipeline: eventual reads checked as if they were strong. A
    follower serves them from its own state, which may lag the leader's commits (and a
    restarted follower lags more), so the stale reads eventual consistency allows must be
    reported as linearizability violations — and the run must fail, keeping its history.

    Whether a stale read happens is up to timing: on a machine loaded enough that the run
    barely makes progress during its fault, one run saw none. So up to three seeds are tried;
    the first run that has violations is checked."""
    extra = ("--eventual-as-strong",)
    results = []
    for seed in (2, 11, 23):
        run_dir = tmp_path / f"seed{seed}"
        run_dir.mkdir()
        result = run_chaos(
            run_dir, "kill-follower", duration=12, seed=seed, timeout=90, extra=extra
        )
        results.append(result)
        if result["violations"]:
            break
    assert result["violations"], results
    assert all(v.startswith("no linearization of key") for v in result["violations"])
    assert result["kept"] is not None
    assert (Path(result["kept"]) / "history.json").exists()
    assert any(p.name.endswith(".log") for p in Path(result["kept"]).iterdir())


@pytest.mark.timeout(60)
def test_a_killed_runner_leaves_no_process_behind(tmp_path: Path) -> None:
    """SIGKILL of the runner mid-run: its pid namespace takes every node with it."""
    out = tmp_path / "runs"
    args = ["--scenario", "kill-leader", "--duration", "60", "--runs", "1", "--out", str(out)]
    proc = subprocess.Popen(
        sandbox.command(args),
        cwd=ROOT,
        env=sandbox.environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 40
        while len(localprocs.nodes_under(str(out))) < 3:
            assert proc.poll() is None, "the runner ended before its nodes ran"
            assert time.monotonic() < deadline, "the runner's nodes did not start within 40 s"
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert localprocs.wait_gone([p.pid for p in localprocs.nodes_under(str(out))], timeout=10) == []
