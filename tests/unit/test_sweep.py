"""The leaked-process sweep: a pytest run that leaves a process alive fails and kills it; a
run that cleans up passes. Runs real pytest subprocesses with the real plugin."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from kvnode import localprocs

ROOT = Path(__file__).resolve().parents[2]

LEAKY = """
import subprocess, sys, os

def test_leaks(tmp_path):
    env = dict(os.environ, KVNODE_DATA_DIR=str(tmp_path / "node-0"))
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"],
                         env=env, start_new_session=True)
    (tmp_path.parent.parent / "leaked.pid").write_text(str(p.pid))
"""

CLEAN = """
import subprocess, sys

def test_cleans_up():
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    p.kill()
    p.wait()
"""


def run_pytest(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(body))
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\n"
    )
    (tmp_path / "bt").mkdir()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), *sys.path]))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "tests.support.sweep",
         "-p", "no:cacheprovider", "--basetemp", str(tmp_path / "bt" / "t"),
         "--rootdir", str(tmp_path), str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_a_leaked_process_fails_the_run_and_is_killed(tmp_path: Path) -> None:
    done = run_pytest(tmp_path, LEAKY)
    pid = int((tmp_path / "bt" / "leaked.pid").read_text())
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 passed" in done.stdout
    assert "leaked processes" in done.stdout
    assert f"pid {pid} " in done.stdout
    assert not localprocs.alive(pid)


def test_a_clean_run_passes(tmp_path: Path) -> None:
    done = run_pytest(tmp_path, CLEAN)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "leaked processes" not in done.stdout


def _tests_of_bench(path: Path) -> bool:
    """The benchmarks' own tests (tests/unit/bench/, tests/**/test_bench_*.py) import bench:
    that is what they test."""
    rel = path.relative_to(ROOT / "tests")
    return rel.parts[:2] == ("unit", "bench") or path.name.startswith("test_bench_")


def test_tests_never_import_bench() -> None:
    """Shared code lives in tests/support; bench may import it, never the other way round
    (only the benchmarks' own tests import bench)."""
    offenders = []
    for path in (ROOT / "tests").rglob("*.py"):
        if _tests_of_bench(path):
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            words = line.split()
            if words[:2] in (["import", "bench"], ["from", "bench"]) or (
                len(words) > 1 and words[0] in ("import", "from") and words[1].startswith("bench.")
            ):
                offenders.append(f"{path.relative_to(ROOT)}: {line.strip()}")
    assert offenders == []
