"""Process bookkeeping of local clusters: pid files, process groups and a ``/proc`` scan.

Node processes of a local cluster outlive the command that started them (``ringkv local up``
exits and leaves them serving), so they run in their own session (``start_new_session``: pgid ==
pid, unreachable by a signal to the starter's group) and whoever cleans up must find them
without the starter's help. Two independent records make that possible even when the starter
was ``kill -9``'d between ``fork`` and writing anything down:

- a pid file per node, ``<state dir>/pids/<node-id>.pid``, written right after the start (one
  file per node, so concurrent writers never merge a shared JSON document);
- the node's own environment: every node has ``KVNODE_DATA_DIR=<state dir>/<node-id>``, which
  ``/proc/<pid>/environ`` shows, so a scan finds every node of a state dir, recorded or not.

A recorded pid is trusted only if that process's environment still names the same data
directory (a pid can be reused by an unrelated process after the node died). Linux only.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from kvnode.core import files

log = logging.getLogger(__name__)

PID_DIR = "pids"
DATA_DIR_ENV = "KVNODE_DATA_DIR"


@dataclass(frozen=True, slots=True)
class ProcInfo:
    """A live process found by a scan (enough to report it and to kill its group)."""

    pid: int
    pgid: int
    cmdline: str
    data_dir: str | None


# -- pid files ---------------------------------------------------------------------------------
def record_pid(base_dir: str, node_id: str, pid: int) -> None:
    path = os.path.join(base_dir, PID_DIR)
    os.makedirs(path, exist_ok=True)
    files.write_atomic(
        os.path.join(path, f"{node_id}.pid"), f"{pid}\n".encode("ascii"), durable=False
    )


def forget_pid(base_dir: str, node_id: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(base_dir, PID_DIR, f"{node_id}.pid"))


def recorded_pids(base_dir: str) -> dict[str, int]:
    """``{node_id: pid}`` from the pid files (whether or not those processes still run)."""
    path = os.path.join(base_dir, PID_DIR)
    out: dict[str, int] = {}
    try:
        names = os.listdir(path)
    except FileNotFoundError:
        return out
    for name in names:
        if not name.endswith(".pid") or name.startswith("."):
            continue
        try:
            with open(os.path.join(path, name), encoding="ascii") as f:
                out[name[: -len(".pid")]] = int(f.read().strip())
        except (OSError, ValueError):
            continue
    return out


# -- /proc -------------------------------------------------------------------------------------
def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def environ_of(pid: int) -> dict[str, str] | None:
    """The environment ``pid`` started with; None if it is gone or not ours to read."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    env: dict[str, str] = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            env[key.decode(errors="replace")] = value.decode(errors="replace")
    return env


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def _pgid(pid: int) -> int:
    try:
        return os.getpgid(pid)
    except OSError:
        return pid


def under(path: str | None, root: str) -> bool:
    """Is ``path`` ``root`` or inside it (both made absolute and normalised)?"""
    if not path:
        return False
    path, root = os.path.abspath(path), os.path.abspath(root)
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def scan(match: Callable[[Mapping[str, str]], bool]) -> list[ProcInfo]:
    """Every live process (other than this one and its ancestors) whose start environment
    satisfies ``match``."""
    skip = _ancestors()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in skip:
            continue
        pid = int(name)
        env = environ_of(pid)
        if env is None or not env or not match(env) or not alive(pid):
            continue
        found.append(ProcInfo(pid, _pgid(pid), _cmdline(pid), env.get(DATA_DIR_ENV)))
    return sorted(found, key=lambda p: p.pid)


def info(pid: int) -> ProcInfo:
    env = environ_of(pid) or {}
    return ProcInfo(pid, _pgid(pid), _cmdline(pid), env.get(DATA_DIR_ENV))


def nodes_under(root: str) -> list[ProcInfo]:
    """Live node processes whose data directory is inside ``root``."""
    return scan(lambda env: under(env.get(DATA_DIR_ENV), root))


def is_node_of(pid: int, data_dir: str) -> bool:
    """Is ``pid`` alive and the node whose data directory is ``data_dir`` (not a reused pid)?"""
    env = environ_of(pid)
    if env is None or not alive(pid):
        return False
    return os.path.abspath(env.get(DATA_DIR_ENV, "")) == os.path.abspath(data_dir)


def _ancestors() -> set[int]:
    out, pid = set(), os.getpid()
    while pid > 1 and pid not in out:
        out.add(pid)
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
                pid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            break
    return out


# -- signals -----------------------------------------------------------------------------------
def signal_group(pid: int, sig: int) -> None:
    """Send ``sig`` to ``pid``'s process group if ``pid`` leads it (our nodes do: own session),
    else to ``pid`` alone (never to a group we might share, such as the test runner's)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if _pgid(pid) == pid and pid != os.getpgrp():
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def wait_gone(pids: Iterable[int], *, timeout: float) -> list[int]:
    """Wait (bounded) until none of ``pids`` is alive; return those still alive. Reaps the
    ones that are children of this process so they do not linger as zombies."""
    pending = set(pids)
    deadline = time.monotonic() + timeout
    while pending:
        for pid in list(pending):
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)
            if not alive(pid):
                pending.discard(pid)
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(0.02)
    return sorted(pending)


def kill_all(procs: Iterable[ProcInfo], *, timeout: float = 10.0) -> list[int]:
    """SIGKILL every process and its group; return the pids still alive after ``timeout``."""
    pids = []
    for p in procs:
        signal_group(p.pid, signal.SIGKILL)
        pids.append(p.pid)
    survivors = wait_gone(pids, timeout=timeout)
    if survivors:
        log.error("processes survived SIGKILL for %.0fs: %s", timeout, survivors)
    return survivors
