"""PartitionStore contract, run on both engines (MemoryStore and LevelDBStore)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from kvnode.core.model import Record
from kvnode.storage import engine
from kvnode.storage.leveldb import LevelDBStore
from kvnode.storage.memory import MemoryStore


@pytest.fixture(params=["memory", "leveldb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[engine.PartitionStore]:
    s: engine.PartitionStore
    s = MemoryStore() if request.param == "memory" else LevelDBStore.open(str(tmp_path / "db"))
    yield s
    s.close()


def rec(value: str, version: int, exp: int | None = None) -> Record:
    return Record(value=value, version=version, expires_at_ms=exp)


def test_new_store_is_empty(store: engine.PartitionStore) -> None:
    assert store.applied_index() == 0
    assert store.get("a") is None
    assert store.scan(limit=10) == []
    assert store.stats().keys == 0


def test_apply_put_get_delete(store: engine.PartitionStore) -> None:
    store.apply(1, puts={"a": rec("1", 1), "b": rec("2", 1)}, deletes=())
    assert store.get("a") == rec("1", 1)
    assert store.applied_index() == 1
    store.apply(2, puts={"a": rec("x", 2)}, deletes=["b", "missing"])
    assert store.get("a") == rec("x", 2)
    assert store.get("b") is None
    st = store.stats()
    assert (st.keys, st.bytes, st.applied_index) == (1, 2, 2)


def test_apply_refuses_bad_input_without_writing(store: engine.PartitionStore) -> None:
    store.apply(5, puts={"a": rec("1", 5)}, deletes=())
    before = store.digest()
    with pytest.raises(ValueError, match="not above"):
        store.apply(5, puts={"b": rec("2", 5)}, deletes=())
    with pytest.raises(ValueError, match="both put and deleted"):
        store.apply(6, puts={"b": rec("2", 6)}, deletes=["b"])
    with pytest.raises(ValueError, match="out of range"):
        store.apply(6, puts={"b": rec("2", 6), "c": rec("3", -1)}, deletes=())
    assert store.digest() == before
    assert store.applied_index() == 5
    assert store.get("b") is None


def test_scan_order_prefix_and_cursor(store: engine.PartitionStore) -> None:
    keys = ["b", "a", "ab", "a\u00e9", "a\U0001f600", "aa", "b0", "\u20ac"]
    store.apply(1, puts={k: rec(k, 1) for k in keys}, deletes=())
    by_bytes = sorted(keys, key=lambda k: k.encode())
    assert [k for k, _ in store.scan(limit=100)] == by_bytes
    assert [k for k, _ in store.scan(prefix="a", limit=100)] == [
        k for k in by_bytes if k.startswith("a")
    ]
    assert [k for k, _ in store.scan(prefix="a", start_after="aa", limit=2)] == ["ab", "a\u00e9"]
    assert [k for k, _ in store.scan(prefix="a", start_after="0", limit=1)] == ["a"]
    assert store.scan(prefix="a", start_after="b", limit=10) == []
    assert store.scan(prefix="zz", limit=10) == []
    assert [k for k, _ in store.scan(start_after="b", limit=10)] == ["b0", "\u20ac"]
    assert store.scan(limit=0) == []


def test_scan_pages_cover_everything_once(store: engine.PartitionStore) -> None:
    keys = [f"k{i:03d}" for i in range(57)]
    store.apply(1, puts={k: rec("v", 1) for k in keys}, deletes=())
    seen: list[str] = []
    cursor = None
    while True:
        page = store.scan(prefix="k", start_after=cursor, limit=10)
        if not page:
            break
        seen += [k for k, _ in page]
        cursor = page[-1][0]
    assert seen == keys


def test_expiry_index_tracks_overwrites_and_deletes(store: engine.PartitionStore) -> None:
    assert store.next_expiry_ms() is None
    store.apply(1, puts={"a": rec("1", 1, 100), "b": rec("2", 1, 50), "c": rec("3", 1)}, deletes=())
    assert store.next_expiry_ms() == 50
    assert store.expired_keys(49, 10) == []
    assert store.expired_keys(50, 10) == ["b"]
    assert store.expired_keys(1000, 10) == ["b", "a"]
    assert store.expired_keys(1000, 1) == ["b"]
    store.apply(2, puts={"a": rec("1", 2)}, deletes=["b"])  # a overwritten without TTL
    assert store.expired_keys(10**15, 10) == []
    assert store.next_expiry_ms() is None
    store.apply(3, puts={"c": rec("3", 3, 70)}, deletes=())
    store.apply(4, puts={"c": rec("3", 4, 80)}, deletes=())  # TTL moved: old entry removed
    assert store.expired_keys(75, 10) == []
    assert store.expired_keys(80, 10) == ["c"]
    assert store.next_expiry_ms() == 80


def test_stores_agree_on_digest_and_dump(tmp_path: Path) -> None:
    mem = MemoryStore()
    ldb = LevelDBStore.open(str(tmp_path / "db"))
    for s in (mem, ldb):
        s.apply(3, puts={"x": rec("1", 3, 99), "y": rec("\u00e9", 3)}, deletes=())
        s.apply(4, puts={"z": rec("", 4)}, deletes=["y"])
    assert mem.digest() == ldb.digest()
    mem_dump = list(mem.iter_dump())
    ldb_dump = [
        (k, v) for k, v in ldb.iter_dump() if k not in (engine.STATS_KEY, engine.FORMAT_KEY)
    ]
    assert mem_dump == ldb_dump
    ldb.close()


def test_digest_ignores_applied_index_but_not_records(store: engine.PartitionStore) -> None:
    store.apply(1, puts={"a": rec("1", 1)}, deletes=())
    d1 = store.digest()
    store.apply(2, puts={}, deletes=())
    assert store.digest() == d1
    store.apply(3, puts={"a": rec("1", 3)}, deletes=())
    assert store.digest() != d1


def test_dump_digest_is_the_digest_at_dump_time(store: engine.PartitionStore) -> None:
    store.apply(1, puts={"a": rec("1", 1), "b": rec("2", 1)}, deletes=())
    before = store.digest()
    dump = store.iter_dump()  # the snapshot is taken here
    store.apply(2, puts={"c": rec("3", 2)}, deletes=("a",))
    assert engine.dump_digest(dump) == (before, 2)
    assert engine.dump_digest(store.iter_dump()) == (store.digest(), 2)
    assert store.digest() != before


@pytest.mark.parametrize("target", ["memory", "leveldb"])
def test_dump_load_round_trip_across_engines(
    store: engine.PartitionStore, target: str, tmp_path: Path
) -> None:
    store.apply(7, puts={"a": rec("1", 7, 500), "b": rec("2", 7)}, deletes=())
    dst: engine.PartitionStore
    dst = MemoryStore() if target == "memory" else LevelDBStore.open(str(tmp_path / "dst"))
    dst.apply(1, puts={"old": rec("gone", 1)}, deletes=())
    dst.load_dump(store.iter_dump())
    assert dst.applied_index() == 7
    assert dst.digest() == store.digest()
    assert dst.get("old") is None
    assert dst.expired_keys(500, 10) == ["a"]
    assert (dst.stats().keys, dst.stats().bytes) == (store.stats().keys, store.stats().bytes)
    dst.close()


def test_iter_dump_is_a_snapshot_taken_at_call_time(store: engine.PartitionStore) -> None:
    store.apply(1, puts={"a": rec("1", 1)}, deletes=())
    dump = store.iter_dump()
    store.apply(2, puts={"b": rec("2", 2)}, deletes=["a"])
    items = dict(dump)
    assert engine.DATA_PREFIX + b"a" in items
    assert engine.DATA_PREFIX + b"b" not in items
    assert engine.unpack_u64(items[engine.APPLIED_KEY]) == 1


@pytest.mark.parametrize(
    "bad",
    [
        [(b"d\x00a", b"short")],
        [(b"q\x00a", b"")],
        [(engine.APPLIED_KEY, b"\x00")],
        [(b"d\x00b", bytes(16)), (b"d\x00a", bytes(16))],
        [(b"d\x00a", bytes(16)), (b"d\x00a", bytes(16))],
        [(b"d\x00\xff", bytes(16))],
    ],
)
def test_load_dump_refuses_malformed_items(
    store: engine.PartitionStore, bad: list[tuple[bytes, bytes]]
) -> None:
    store.apply(2, puts={"keep": rec("1", 2)}, deletes=())
    with pytest.raises(ValueError, match=r"."):
        store.load_dump(iter(bad))
    assert store.get("keep") == rec("1", 2)
    assert store.applied_index() == 2


def test_load_dump_failing_midway_leaves_store_untouched(store: engine.PartitionStore) -> None:
    store.apply(2, puts={"keep": rec("1", 2)}, deletes=())

    def items() -> Iterator[tuple[bytes, bytes]]:
        yield engine.DATA_PREFIX + b"new", engine.encode_record(rec("n", 9))
        raise OSError("stream broke")

    with pytest.raises(OSError, match="stream broke"):
        store.load_dump(items())
    assert store.get("keep") == rec("1", 2)
    assert store.get("new") is None
    # The store still works afterwards.
    store.apply(3, puts={"more": rec("m", 3)}, deletes=())
    assert store.get("more") == rec("m", 3)


def test_surrogate_keys_round_trip(store: engine.PartitionStore) -> None:
    store.apply(1, puts={"\udc80k": rec("\ud800", 1)}, deletes=())
    assert store.get("\udc80k") == rec("\ud800", 1)
    assert store.scan(limit=5) == [("\udc80k", rec("\ud800", 1))]


# -- LevelDB specifics ------------------------------------------------------------------------


def test_leveldb_persists_across_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "db")
    s = LevelDBStore.open(path, sync=True)
    s.apply(1, puts={"a": rec("1", 1, 10)}, deletes=())
    s.apply(2, puts={"b": rec("22", 2)}, deletes=())
    digest = s.digest()
    s.close()
    s = LevelDBStore.open(path)
    assert s.applied_index() == 2
    assert s.digest() == digest
    assert (s.stats().keys, s.stats().bytes) == (2, 5)
    assert s.expired_keys(10, 5) == ["a"]
    s.close()
    LevelDBStore.destroy(path)
    assert not os.path.exists(path)


def test_leveldb_refuses_unknown_layout(tmp_path: Path) -> None:
    import plyvel

    path = str(tmp_path / "db")
    db = plyvel.DB(path, create_if_missing=True)
    db.put(engine.FORMAT_KEY, b"\x00\x00\x00\x09")
    db.close()
    with pytest.raises(ValueError, match="unsupported layout"):
        LevelDBStore.open(path)


def test_leveldb_finishes_an_interrupted_swap(tmp_path: Path) -> None:
    path = str(tmp_path / "db")
    src = MemoryStore()
    src.apply(9, puts={"new": rec("n", 9)}, deletes=())
    s = LevelDBStore.open(path)
    s.apply(1, puts={"old": rec("o", 1)}, deletes=())
    s.close()
    staged = LevelDBStore.open(path + "-staged")
    staged.load_dump(src.iter_dump())
    staged.close()
    # Crash after "live -> .old" and before ".loading -> live".
    os.rename(path, path + ".old")
    os.rename(path + "-staged", path + ".loading")
    s = LevelDBStore.open(path)
    assert s.applied_index() == 9
    assert s.get("new") == rec("n", 9)
    assert not os.path.exists(path + ".old")
    s.close()


def test_leveldb_discards_an_unfinished_load(tmp_path: Path) -> None:
    path = str(tmp_path / "db")
    s = LevelDBStore.open(path)
    s.apply(1, puts={"old": rec("o", 1)}, deletes=())
    s.close()
    os.makedirs(path + ".loading")
    s = LevelDBStore.open(path)
    assert s.get("old") == rec("o", 1)
    assert not os.path.exists(path + ".loading")
    s.close()


def test_leveldb_reads_never_fail_during_load_dump(tmp_path: Path) -> None:
    s = LevelDBStore.open(str(tmp_path / "db"))
    s.apply(1, puts={f"k{i}": rec("v", 1) for i in range(200)}, deletes=())
    src = MemoryStore()
    src.apply(5, puts={f"k{i}": rec("w", 5) for i in range(200)}, deletes=())
    stop = threading.Event()
    failures: list[BaseException] = []

    def reader() -> None:
        while not stop.is_set():
            try:
                r = s.get("k7")
                assert r is not None
                assert r.value in ("v", "w")
                s.scan(prefix="k1", limit=5)
            except BaseException as e:  # pragma: no cover - reported below
                failures.append(e)
                return

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for _ in range(5):
        s.load_dump(src.iter_dump())
    stop.set()
    for t in threads:
        t.join(timeout=10)
    assert failures == []
    assert s.get("k7") == rec("w", 5)
    s.close()


def test_leveldb_dump_interrupted_by_swap_raises(tmp_path: Path) -> None:
    s = LevelDBStore.open(str(tmp_path / "db"))
    s.apply(1, puts={f"k{i}": rec("v", 1) for i in range(10)}, deletes=())
    dump = s.iter_dump()
    next(dump)
    s.load_dump(MemoryStore().iter_dump())
    with pytest.raises(RuntimeError):
        list(dump)
    s.close()
