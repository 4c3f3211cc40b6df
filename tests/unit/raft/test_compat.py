"""The PySyncObj compatibility check fails loudly, naming what is missing."""

from __future__ import annotations

import pickle
import socket
import struct
import time
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kvnode.raft import compat
from kvnode.raft.compat import PySyncObjIncompatible, Requirement, ensure_compatible, missing_names


def test_installed_pysyncobj_passes_the_check() -> None:
    assert missing_names(compat.REQUIRED_VERSION, compat.INSTALLED) == []


def test_a_missing_private_method_is_named() -> None:
    class SyncObj:  # a PySyncObj whose handler was renamed upstream
        def _SyncObj__sendNextNodeIdx(self) -> None: ...

    owners = {**compat.INSTALLED, "SyncObj": SyncObj}
    with pytest.raises(PySyncObjIncompatible) as exc:
        ensure_compatible(compat.REQUIRED_VERSION, owners)
    text = str(exc.value)
    assert "SyncObj._SyncObj__onMessageReceived is missing" in text
    assert "SyncObj._SyncObj__sendNextNodeIdx is missing" not in text
    assert isinstance(exc.value, ImportError)


def test_a_private_attribute_no_longer_used_is_named() -> None:
    class TCPTransport:
        def __init__(self) -> None:
            self._connections: dict[str, str] = {}  # but no _preventConnectNodes any more
            self._syncObj = None

        def send(self) -> None: ...

        def _shouldConnect(self) -> None: ...

        ready = True

    problems = missing_names(
        compat.REQUIRED_VERSION, {**compat.INSTALLED, "TCPTransport": TCPTransport}
    )
    assert problems == ["TCPTransport no longer uses _preventConnectNodes"]


def test_another_version_is_refused_even_with_every_name() -> None:
    with pytest.raises(PySyncObjIncompatible, match=r"version is 0\.3\.18, .* exactly 0\.3\.17"):
        ensure_compatible("0.3.18", compat.INSTALLED)


def test_a_missing_module_member_is_named() -> None:
    reqs = [Requirement("pysyncobj.syncobj", "createPoller"), Requirement("nowhere", "x")]
    problems = missing_names(compat.REQUIRED_VERSION, {"pysyncobj.syncobj": object()}, reqs)
    assert problems == ["pysyncobj.syncobj.createPoller is missing", "nowhere is missing"]


def test_only_compat_touches_pysyncobj_internals() -> None:
    """Everything else uses PySyncObj's package-level API, so the import-time check covers
    every private name ringkv depends on (import-linter cannot forbid external submodules)."""
    import ast
    import pathlib

    import kvnode

    root = pathlib.Path(kvnode.__file__).parent
    offenders = []
    for path in sorted(root.rglob("*.py")):
        if path == root / "raft" / "compat.py":
            continue
        source = path.read_text(encoding="utf-8")
        if "_SyncObj__" in source:
            offenders.append(f"{path.relative_to(root)}: _SyncObj__")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pysyncobj."):
                offenders.append(f"{path.relative_to(root)}: from {node.module}")
            if isinstance(node, ast.ImportFrom) and node.module == "pysyncobj":
                internal = {"syncobj", "journal", "poller", "transport", "serializer", "pickle"}
                offenders += [
                    f"{path.relative_to(root)}: pysyncobj.{a.name}"
                    for a in node.names
                    if a.name in internal
                ]
            if isinstance(node, ast.Import):
                offenders += [
                    f"{path.relative_to(root)}: import {a.name}"
                    for a in node.names
                    if a.name.startswith("pysyncobj.")
                ]
    assert offenders == []


def test_a_received_snapshot_is_synced_before_it_replaces_the_old_one(
    tmp_path, monkeypatch
) -> None:
    from pysyncobj import serializer

    assert serializer.atomicReplace is compat._durable_replace
    synced: list[str] = []
    real_fsync = compat.os.fsync

    def fsync(fd: int) -> None:
        synced.append(compat.os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(compat.os, "fsync", fsync)
    src, dst = tmp_path / "raft.snapshot.1.tmp", tmp_path / "raft.snapshot"
    src.write_bytes(b"new")
    dst.write_bytes(b"old")
    compat._durable_replace(str(src), str(dst))
    assert dst.read_bytes() == b"new"
    assert not src.exists()
    assert synced == [str(src), str(tmp_path)]  # the file before the rename, the dir after
    with pytest.raises(FileNotFoundError):  # as PySyncObj's own rename of a missing file
        compat._durable_replace(str(src), str(dst))


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=200_000))
def test_raft_frames_decode_with_zlib_and_older_releases_frames_decode(data: bytes) -> None:
    frame = compat.RaftFrames.compress(data, 3)
    assert zlib.decompress(frame) == data  # what an older release's receiver runs
    assert compat.RaftFrames.decompress(zlib.compress(data, 3)) == data  # an older sender
    assert len(frame) <= len(data) + 11 + 5 * (len(data) // 65535)  # stored blocks: no deflate


def test_a_real_tcp_connection_sends_uncompressed_frames_a_peer_decodes() -> None:
    """PySyncObj's own send and parse, over a real socket pair, with ``RaftFrames`` swapped in
    for its ``zlib``: the bytes on the wire are the stored pickle, the peer gets the message."""
    from pysyncobj import poller, tcp_connection

    assert tcp_connection.zlib is compat.RaftFrames
    received: list[object] = []
    left, right = socket.socketpair()
    left.setblocking(False)
    right.setblocking(False)
    polls = poller.SelectPoller()
    sender = tcp_connection.TcpConnection(polls, socket=left)
    receiver = tcp_connection.TcpConnection(polls, onMessageReceived=received.append, socket=right)
    try:
        message = {"type": "append_entries", "entries": [(b"x" * 5000, 7, 3)], "term": 3}
        sender.send(message)
        deadline = time.monotonic() + 10
        while not received and time.monotonic() < deadline:
            polls.poll(0.05)
        assert received == [message]
        sender.send(message)  # read the raw frame off the wire this time
        right.setblocking(True)
        right.settimeout(10)
        (size,) = struct.unpack("i", right.recv(4, socket.MSG_WAITALL))
        frame = right.recv(size, socket.MSG_WAITALL)
        assert pickle.loads(zlib.decompress(frame)) == message
        assert size > 5000  # 5000 repeated bytes went out as they are (deflate: ~30 bytes)
    finally:
        sender.disconnect()
        receiver.disconnect()
