"""Child processes and bounded waits shared by the control plane and the process kubelet.

Every child is started in its own session (process group) so that stopping it also stops whatever
it spawned; every wait has a deadline and raises `WaitTimeout` with a description, so a hung
component fails a test loudly instead of stalling CI.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class WaitTimeout(AssertionError):
    """A bounded wait ran out; the message says what was awaited and the last observation."""


class Fatal(RuntimeError):
    """Raised by a wait probe when waiting longer cannot help (e.g. the awaited process died)."""


def wait_until(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = 0.2,
    on_timeout: Callable[[], None] | None = None,
) -> T:
    """Poll `probe` until it returns a non-None, non-False value, or fail after `timeout` s.

    `on_timeout` runs before raising (typically a log dump) so the failure explains itself.
    Exceptions from `probe` count as "not yet" but the last one is reported; `Fatal` ends the
    wait at once.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = probe()
            if value is not None and value is not False:
                return value
        except Fatal:
            if on_timeout is not None:
                on_timeout()
            raise
        except Exception as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            if on_timeout is not None:
                on_timeout()
            raise WaitTimeout(f"timed out after {timeout:.0f}s waiting for {what}: {last_error!r}")
        time.sleep(interval)


@dataclass
class Child:
    """A started child process whose output goes to `log_path`."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM the child's process group, wait up to `grace` s, then SIGKILL it."""
        kill_group(self.popen.pid, grace=grace, waiter=self.popen.wait)
        return self.popen.poll()


def start(
    name: str,
    argv: Sequence[str],
    *,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    pass_fds: Sequence[int] = (),
) -> Child:
    """Start `argv` in a new session with stdout+stderr appended to `log_path`; `pass_fds` are
    inherited (e.g. the cluster slot's lock, see netplan)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out:
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
            pass_fds=tuple(pass_fds),
        )
    log.info("started %s pid=%d log=%s", name, popen.pid, log_path)
    return Child(name=name, popen=popen, log_path=log_path)


def kill_group(pgid: int, *, grace: float, waiter: Callable[[float], object] | None = None) -> None:
    """Stop a process group: SIGTERM, up to `grace` s, then SIGKILL. Safe if already gone."""
    if not _signal_group(pgid, signal.SIGTERM):
        _reap(waiter)
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and group_alive(pgid, waiter):
        time.sleep(0.05)
    if group_alive(pgid, waiter):
        log.warning("process group %d ignored SIGTERM for %.1fs: SIGKILL", pgid, grace)
        _signal_group(pgid, signal.SIGKILL)
        # Orphaned members are reaped by init, not us: give that a moment before returning.
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and group_alive(pgid, waiter):
            time.sleep(0.05)
    _reap(waiter)


def group_alive(pgid: int, waiter: Callable[[float], object] | None = None) -> bool:
    """True while any process of group `pgid` exists (zombies of our own children are reaped)."""
    if waiter is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            waiter(0.0)
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_group(pgid: int, sig: signal.Signals) -> bool:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


def _reap(waiter: Callable[[float], object] | None) -> None:
    if waiter is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            waiter(5.0)


def tail(path: Path, lines: int = 60) -> str:
    """The last `lines` lines of a log file, for failure dumps."""
    try:
        data = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return f"<{path} missing>"
    return "\n".join(data[-lines:])
