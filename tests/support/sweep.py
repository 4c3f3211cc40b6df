"""Pytest plugin: a test run that leaves a process behind fails, and the process is killed.

At configure time the run gets an id in ``$RINGKV_TEST_RUN``; every process the run starts
inherits it (node processes copy ``os.environ``). At session end — after every fixture,
including session-scoped ones such as the e2e control plane, has been torn down — any live
process (other than pytest itself and its ancestors) that carries this run's id, or is a kvnode
whose data directory is under this run's pytest temp directory, is a leak: it is listed, killed
with its process group, and the run's exit status becomes "tests failed". A short grace period
lets processes that are already exiting finish.

Loaded for ``tests/`` and ``e2e/`` by the repository's root ``conftest.py``.
"""

from __future__ import annotations

import os
import time
import uuid

import pytest
from kvnode import localprocs

RUN_ENV = "RINGKV_TEST_RUN"
GRACE_S = 3.0
_run_key = pytest.StashKey[str]()


def leaked(run_id: str, temp_root: str | None) -> list[localprocs.ProcInfo]:
    """Live processes started by run ``run_id`` (or nodes with data under ``temp_root``)."""

    def ours(env: dict[str, str]) -> bool:  # type: ignore[type-arg]
        if env.get(RUN_ENV) == run_id:
            return True
        return temp_root is not None and localprocs.under(env.get("KVNODE_DATA_DIR"), temp_root)

    return localprocs.scan(ours)  # type: ignore[arg-type]


def pytest_configure(config: pytest.Config) -> None:
    run_id = uuid.uuid4().hex
    config.stash[_run_key] = run_id
    os.environ[RUN_ENV] = run_id


def _temp_root(config: pytest.Config) -> str | None:
    factory = getattr(config, "_tmp_path_factory", None)  # set by pytest's tmp_path plugin
    if factory is None:
        return None
    try:
        return str(factory.getbasetemp())
    except OSError:
        return None


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    run_id = config.stash.get(_run_key, None)
    if run_id is None:
        return
    temp_root = _temp_root(config)
    deadline = time.monotonic() + GRACE_S
    found = leaked(run_id, temp_root)
    while found and time.monotonic() < deadline:
        time.sleep(0.1)
        found = leaked(run_id, temp_root)
    if not found:
        return
    survivors = localprocs.kill_all(found, timeout=10.0)
    lines = [f"  pid {p.pid} (group {p.pgid}) data={p.data_dir}: {p.cmdline}" for p in found]
    message = (
        f"{len(found)} process(es) started by this test run were still alive at its end "
        "(killed now; every test must stop what it starts):\n" + "\n".join(lines)
    )
    if survivors:
        message += f"\n  still alive after SIGKILL: {survivors}"
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_sep("=", "leaked processes", red=True)
        reporter.write_line(message)
    else:
        print(message)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
