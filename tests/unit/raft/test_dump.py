"""The background dump follows PySyncObj's serializeChecker protocol."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import pytest
from kvnode.raft import dump as dump_mod
from kvnode.raft.dump import BackgroundDump
from kvnode.storage import snapshot
from pysyncobj import SERIALIZER_STATE


def _wait_done(d: BackgroundDump, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = d.check()
        if state != SERIALIZER_STATE.SERIALIZING:
            return state
        time.sleep(0.01)
    raise AssertionError("dump still SERIALIZING")


def _items(n: int, gate: threading.Event | None = None) -> Iterator[tuple[bytes, bytes]]:
    for i in range(n):
        if gate is not None and i == 1:
            assert gate.wait(10)
        yield b"d\x00k%06d" % i, b"v"


def test_dump_is_written_aside_then_installed_by_the_checker(tmp_path) -> None:
    path = str(tmp_path / "raft.snapshot")
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(b"stale leftover")  # PySyncObj would rename this over the dump
    d = BackgroundDump(dump_path=path, label="t")
    assert d.check() == SERIALIZER_STATE.NOT_SERIALIZING
    gate = threading.Event()
    d.start(tmp, b"hdr", _items(100, gate))
    assert not os.path.exists(tmp)
    assert d.check() == SERIALIZER_STATE.SERIALIZING
    assert not os.path.exists(path)
    gate.set()
    assert _wait_done(d) == SERIALIZER_STATE.SUCCESS
    header, items, info = snapshot.read_snapshot(path)
    assert header == b"hdr"
    assert len(items) == 100
    assert info.count == 100
    assert d.check() == SERIALIZER_STATE.NOT_SERIALIZING


def test_cancelled_dump_reports_failed_and_installs_nothing(tmp_path) -> None:
    path = str(tmp_path / "raft.snapshot")
    d = BackgroundDump(dump_path=path, label="t")
    gate = threading.Event()
    d.start(path + ".tmp", b"hdr", _items(10_000, gate))
    d.cancel()
    gate.set()
    assert _wait_done(d) == SERIALIZER_STATE.FAILED
    assert not os.path.exists(path)


def test_failed_dump_backs_off_before_reporting(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dump_mod, "RETRY_AFTER_FAILURE_S", 0.3)

    def broken() -> Iterator[tuple[bytes, bytes]]:
        yield b"d\x00a", b"v"
        raise OSError("disk gone")

    d = BackgroundDump(dump_path=str(tmp_path / "raft.snapshot"), label="t")
    d.start(str(tmp_path / "raft.snapshot.tmp"), b"hdr", broken())
    started = time.monotonic()
    assert _wait_done(d) == SERIALIZER_STATE.FAILED
    assert time.monotonic() - started >= 0.3
    assert d.check() == SERIALIZER_STATE.NOT_SERIALIZING


def test_close_stops_the_worker(tmp_path) -> None:
    d = BackgroundDump(dump_path=str(tmp_path / "raft.snapshot"), label="t")
    d.start(str(tmp_path / "x.tmp"), b"hdr", _items(1_000_000))
    d.close(timeout=10)
    assert _wait_done(d) == SERIALIZER_STATE.FAILED
