"""Unit tests of the harness plumbing: bounded waits and process-group cleanup.

Marked `e2e` only because CI runs e2e/ with `-m e2e`; no cluster is involved.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from kvharness import netplan, procs

pytestmark = pytest.mark.e2e


def test_wait_until_returns_the_first_truthy_value() -> None:
    values = iter([None, False, 0, "done"])
    assert procs.wait_until(lambda: next(values), timeout=5, what="x", interval=0.01) == 0


def test_wait_until_times_out_loudly_after_dumping() -> None:
    dumped: list[bool] = []
    started = time.monotonic()
    with pytest.raises(procs.WaitTimeout, match="waiting for the thing: ValueError"):
        procs.wait_until(
            lambda: (_ for _ in ()).throw(ValueError("nope")), timeout=0.3, what="the thing",
            interval=0.05, on_timeout=lambda: dumped.append(True),
        )  # fmt: skip
    assert dumped == [True]
    assert time.monotonic() - started < 2


def test_wait_until_stops_at_once_on_fatal() -> None:
    def probe() -> None:
        raise procs.Fatal("component died")

    started = time.monotonic()
    with pytest.raises(procs.Fatal):
        procs.wait_until(probe, timeout=30, what="x")
    assert time.monotonic() - started < 1


def test_stop_kills_the_whole_process_group(tmp_path: Path) -> None:
    # The shell ignores SIGTERM and has a grandchild: both must be gone after stop().
    child = procs.start(
        "stubborn", ["sh", "-c", "trap '' TERM; sleep 300 & while true; do sleep 0.1; done"],
        log_path=tmp_path / "log",
    )  # fmt: skip
    time.sleep(0.3)
    assert procs.group_alive(child.pid)
    child.stop(grace=0.5)
    assert not procs.group_alive(child.pid)


def test_cluster_slots_are_exclusive_until_released(tmp_path: Path) -> None:
    first, fd1 = netplan.acquire(tmp_path)
    second, fd2 = netplan.acquire(tmp_path)
    try:
        assert (first.index, second.index) == (0, 1)
        assert first.host_ip != second.host_ip
    finally:
        os.close(fd1)  # released: the next cluster reuses slot 0
    again, fd3 = netplan.acquire(tmp_path)
    assert again.index == 0
    for fd in (fd2, fd3):
        os.close(fd)


def test_a_slot_outlives_its_taker_in_an_inheriting_child(tmp_path: Path) -> None:
    """`e2e/cluster up` exits after starting; the kubelet child keeps the slot's lock."""
    slot, fd = netplan.acquire(tmp_path)
    child = procs.start("holder", ["sleep", "30"], log_path=tmp_path / "log", pass_fds=[fd])
    os.close(fd)
    try:
        other, fd2 = netplan.acquire(tmp_path)
        assert other.index != slot.index
        os.close(fd2)
    finally:
        child.stop(grace=1)
    reused, fd3 = netplan.acquire(tmp_path)
    assert reused.index == slot.index
    os.close(fd3)
