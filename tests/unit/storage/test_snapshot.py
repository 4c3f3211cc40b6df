"""Snapshot format: round trip, streaming decode, and corruption always detected."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kvnode.core.model import Record
from kvnode.storage import engine, snapshot
from kvnode.storage.leveldb import LevelDBStore
from kvnode.storage.memory import MemoryStore
from kvnode.storage.snapshot import SnapshotCorrupt, SnapshotDecoder, SnapshotEncoder


def sample_store() -> MemoryStore:
    s = MemoryStore()
    s.apply(
        12,
        puts={
            "alpha": Record("1", 3, 1_000),
            "beta": Record("two", 12),
            "\u00e9t\u00e9": Record("x" * 40, 7),
        },
        deletes=(),
    )
    return s


@pytest.fixture(params=["memory", "leveldb"])
def live(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[engine.PartitionStore]:
    s: engine.PartitionStore
    s = MemoryStore() if request.param == "memory" else LevelDBStore.open(str(tmp_path / "live"))
    s.apply(4, puts={"live": Record("data", 4, 77)}, deletes=())
    yield s
    s.close()


def test_round_trip_through_a_file(tmp_path: Path) -> None:
    src = sample_store()
    path = str(tmp_path / "snap")
    info = snapshot.write_snapshot(path, header=b"raft-meta", items=src.iter_dump())
    assert info.count == len(list(src.iter_dump()))
    assert info.size_bytes == os.path.getsize(path)
    assert not os.path.exists(path + ".tmp")
    header, items, read_info = snapshot.read_snapshot(path)
    assert header == b"raft-meta"
    assert items == list(src.iter_dump())
    assert read_info == info
    assert snapshot.read_header(path) == b"raft-meta"


def test_empty_snapshot_round_trip(tmp_path: Path) -> None:
    path = str(tmp_path / "snap")
    info = snapshot.write_snapshot(path, header=b"", items=[])
    assert info.count == 0
    assert snapshot.read_snapshot(path)[:2] == (b"", [])


def test_load_snapshot_replaces_live_content(live: engine.PartitionStore, tmp_path: Path) -> None:
    src = sample_store()
    path = str(tmp_path / "snap")
    snapshot.write_snapshot(path, header=b"h", items=src.iter_dump())
    assert live.load_snapshot(path) == b"h"
    assert live.digest() == src.digest()
    assert live.applied_index() == 12
    assert live.get("live") is None


@given(
    header=st.binary(max_size=50),
    items=st.dictionaries(st.binary(max_size=20), st.binary(max_size=300), max_size=30),
    chunk=st.integers(min_value=1, max_value=97),
    enc_chunk=st.integers(min_value=1, max_value=512),
)
@settings(max_examples=200, deadline=None)
def test_decoder_accepts_any_chunking(
    header: bytes, items: dict[bytes, bytes], chunk: int, enc_chunk: int
) -> None:
    pairs = sorted(items.items())
    enc = SnapshotEncoder(header=header, items=pairs, chunk_bytes=enc_chunk)
    data = b"".join(enc)
    assert enc.info is not None
    assert enc.info.size_bytes == len(data)
    dec = SnapshotDecoder()
    got: list[tuple[bytes, bytes]] = []
    for i in range(0, len(data), chunk):
        got += dec.feed(data[i : i + chunk])
    assert dec.finish() == enc.info
    assert dec.header == header
    assert got == pairs


def snapshot_bytes() -> bytes:
    return b"".join(SnapshotEncoder(header=b"meta", items=sample_store().iter_dump()))


def test_every_truncation_is_detected_and_live_store_untouched(
    live: engine.PartitionStore, tmp_path: Path
) -> None:
    data = snapshot_bytes()
    before = (live.digest(), live.applied_index())
    path = tmp_path / "snap"
    for cut in range(len(data)):
        path.write_bytes(data[:cut])
        with pytest.raises(SnapshotCorrupt):
            live.load_snapshot(str(path))
        assert (live.digest(), live.applied_index()) == before, f"cut at {cut}"
    assert live.get("live") == Record("data", 4, 77)


def test_every_bit_flip_is_detected(tmp_path: Path) -> None:
    data = snapshot_bytes()
    live = MemoryStore()
    path = tmp_path / "snap"
    for pos in range(len(data)):
        for bit in (0x01, 0x80):
            flipped = bytearray(data)
            flipped[pos] ^= bit
            path.write_bytes(bytes(flipped))
            with pytest.raises(SnapshotCorrupt):
                live.load_snapshot(str(path))
    assert live.applied_index() == 0


def test_bit_flip_leaves_leveldb_store_untouched(
    live: engine.PartitionStore, tmp_path: Path
) -> None:
    data = bytearray(snapshot_bytes())
    data[len(data) // 2] ^= 0x10
    path = tmp_path / "snap"
    path.write_bytes(bytes(data))
    before = live.digest()
    with pytest.raises(SnapshotCorrupt):
        live.load_snapshot(str(path))
    assert live.digest() == before


def test_trailing_garbage_is_detected() -> None:
    dec = SnapshotDecoder()
    with pytest.raises(SnapshotCorrupt, match="after the snapshot trailer"):
        dec.feed(snapshot_bytes() + b"\x00")


def test_garbage_after_completion_is_detected() -> None:
    dec = SnapshotDecoder()
    dec.feed(snapshot_bytes())
    dec.finish()
    with pytest.raises(SnapshotCorrupt):
        dec.feed(b"x")


def test_wrong_magic_and_huge_lengths_fail_fast() -> None:
    with pytest.raises(SnapshotCorrupt, match="magic"):
        SnapshotDecoder().feed(b"NOTASNAP")
    data = bytearray(snapshot_bytes())
    data[12:16] = b"\xff\xff\xff\xf0"  # header length
    with pytest.raises(SnapshotCorrupt, match="exceeds"):
        SnapshotDecoder(max_field_bytes=1 << 20).feed(bytes(data))


def test_write_snapshot_replaces_atomically(tmp_path: Path) -> None:
    path = str(tmp_path / "snap")
    snapshot.write_snapshot(path, header=b"old", items=[])

    def broken() -> Iterator[tuple[bytes, bytes]]:
        yield b"k", b"v"
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        snapshot.write_snapshot(path, header=b"new", items=broken())
    assert snapshot.read_header(path) == b"old"
    assert not os.path.exists(path + ".tmp")
