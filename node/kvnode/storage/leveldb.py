"""``LevelDBStore``: one LevelDB (via plyvel) per partition replica. The only plyvel importer.

On-disk layout (binary keys; see also ``kvnode.storage.engine``)::

    d\\x00<utf8 key>                    -> u64 BE version, u64 BE expires_at_ms (0 = none), value
    x\\x00<u64 BE expires_at><utf8 key> -> b""   expiry index: a range scan finds expired keys
    m\\x00applied                       -> u64 BE last applied Raft index
    m\\x00stats                         -> u64 BE key count, u64 BE logical bytes
    m\\x00format                        -> u32 BE layout version (1); another value refuses to open

Invariants: every ``apply`` is ONE WriteBatch carrying the data, the expiry-index upkeep, the
stats and the applied index, so a crash leaves either all or none of an entry and a replayed
journal entry is skipped. ``sync=True`` makes that batch a LevelDB sync write (fsync of the
LevelDB log); the node uses ``sync=False``: a process crash loses nothing (page cache), and after
a host crash the store is rebuilt from the Raft snapshot and journal (``kvnode.storage.unsynced``).
``close`` ends with a sync write.

Directories: ``<path>`` is the live DB; ``load_dump`` builds ``<path>.loading``, and only once
every item was read and verified swaps it in (``<path>`` → ``<path>.old``, ``.loading`` →
``<path>``, fsync of the parent, reopen). ``open`` finishes or discards an interrupted swap.

Threads: reads run on the asyncio thread while ``apply`` runs on the Raft tick thread; plyvel
is thread-safe, and a shared/exclusive guard makes sure no read or write uses the handle while
``load_dump`` or ``close`` replaces it (a get on a closed plyvel DB raises).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import struct
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import plyvel

from kvnode.core import files, model
from kvnode.storage import engine, snapshot

log = logging.getLogger(__name__)

_STATS = struct.Struct(">QQ")
_FORMAT = struct.Struct(">I")
_EXP = struct.Struct(">Q")
_HEAD = 16  # bytes of version + expiry before the value in a record
_LOAD_BATCH = 1000


class _SwapGuard:
    """Many concurrent users of the DB handle, or one swapper; a pending swap blocks new users."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._users = 0
        self._swapping = False

    def __enter__(self) -> None:
        with self._cond:
            while self._swapping:
                self._cond.wait()
            self._users += 1

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self._users -= 1
            if self._users == 0:
                self._cond.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            while self._swapping:
                self._cond.wait()
            self._swapping = True
            while self._users:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._swapping = False
                self._cond.notify_all()


class LevelDBStore:
    """A ``PartitionStore`` on one LevelDB directory. Build with ``LevelDBStore.open``."""

    def __init__(self, path: str, db: Any, *, sync: bool, options: dict[str, Any]) -> None:
        self._path = path
        self._db = db
        self._sync = sync
        self._options = options
        self._guard = _SwapGuard()
        # (applied_index, keys, bytes) swapped as one tuple so readers never see a torn state.
        self._state = _read_state(db)

    @classmethod
    def open(
        cls,
        path: str,
        *,
        sync: bool = False,
        write_buffer_size: int = 1 << 20,
        cache_size: int = 4 << 20,
        bloom_bits: int = 10,
    ) -> LevelDBStore:
        """Open (creating if missing) the replica at ``path``; O(1) in the data size."""
        options: dict[str, Any] = {
            "write_buffer_size": write_buffer_size,
            "lru_cache_size": cache_size,
            "bloom_filter_bits": bloom_bits,
        }
        _recover_swap(path)
        db = _open_db(path, options)
        return cls(path, db, sync=sync, options=options)

    @staticmethod
    def destroy(path: str) -> None:
        """Drop a (closed) replica's data, including leftovers of an interrupted load."""
        for p in (path, path + ".loading", path + ".old"):
            if os.path.exists(p):
                plyvel.destroy_db(p)
                shutil.rmtree(p, ignore_errors=True)

    @property
    def path(self) -> str:
        return self._path

    def applied_index(self) -> int:
        return self._state[0]

    def get(self, key: str) -> model.Record | None:
        with self._guard:
            raw = self._db.get(engine.DATA_PREFIX + engine.key_bytes(key))
        return None if raw is None else engine.decode_record(raw)

    def scan(
        self, *, prefix: str = "", start_after: str | None = None, limit: int
    ) -> list[tuple[str, model.Record]]:
        if limit <= 0:
            return []
        pb = engine.key_bytes(prefix)
        start, include_start = engine.DATA_PREFIX + pb, True
        if start_after is not None:
            ab = engine.key_bytes(start_after)
            if ab >= pb:
                start, include_start = engine.DATA_PREFIX + ab, False
        stop = _prefix_stop(pb)
        if start >= stop:
            return []
        out: list[tuple[str, model.Record]] = []
        skip = len(engine.DATA_PREFIX)
        with self._guard:
            it = self._db.iterator(start=start, stop=stop, include_start=include_start)
            try:
                for k, v in it:
                    out.append((engine.key_str(k[skip:]), engine.decode_record(v)))
                    if len(out) >= limit:
                        break
            finally:
                it.close()
        return out

    def expired_keys(self, now_ms: int, limit: int) -> list[str]:
        if limit <= 0:
            return []
        skip = len(engine.EXPIRY_PREFIX) + _EXP.size
        out: list[str] = []
        with self._guard:
            it = self._db.iterator(
                start=engine.EXPIRY_PREFIX, stop=engine.expiry_bound(now_ms), include_value=False
            )
            try:
                for k in it:
                    out.append(engine.key_str(k[skip:]))
                    if len(out) >= limit:
                        break
            finally:
                it.close()
        return out

    def next_expiry_ms(self) -> int | None:
        with self._guard:
            it = self._db.iterator(
                start=engine.EXPIRY_PREFIX, stop=engine.EXPIRY_END, include_value=False
            )
            try:
                first = next(it, None)
            finally:
                it.close()
        if first is None:
            return None
        (exp,) = _EXP.unpack_from(first, len(engine.EXPIRY_PREFIX))
        return int(exp)

    def apply(
        self, index: int, *, puts: Mapping[str, model.Record], deletes: Iterable[str]
    ) -> None:
        dels = list(dict.fromkeys(deletes))
        with self._guard:
            applied, keys, nbytes = self._state
            engine.check_apply(applied, index, puts, dels)
            db = self._db
            wb = db.write_batch(sync=self._sync)
            for key in dels:
                kb = engine.key_bytes(key)
                old = db.get(engine.DATA_PREFIX + kb)
                if old is not None:
                    _drop_expiry(wb, kb, old)
                    wb.delete(engine.DATA_PREFIX + kb)
                    keys, nbytes = keys - 1, nbytes - len(kb) - len(old) + _HEAD
            for key, rec in puts.items():
                kb = engine.key_bytes(key)
                enc = engine.encode_record(rec)
                old = db.get(engine.DATA_PREFIX + kb)
                if old is None:
                    keys += 1
                else:
                    _drop_expiry(wb, kb, old)
                    nbytes -= len(kb) + len(old) - _HEAD
                wb.put(engine.DATA_PREFIX + kb, enc)
                if rec.expires_at_ms is not None:
                    wb.put(engine.expiry_item_key(rec.expires_at_ms, kb), b"")
                nbytes += len(kb) + len(enc) - _HEAD
            wb.put(engine.APPLIED_KEY, engine.pack_u64(index))
            wb.put(engine.STATS_KEY, _STATS.pack(keys, nbytes))
            wb.write()
            self._state = (index, keys, nbytes)

    def stats(self) -> engine.StoreStats:
        applied, keys, nbytes = self._state
        with self._guard:
            disk = self._db.approximate_size(engine.DATA_PREFIX, engine.DATA_END)
        return engine.StoreStats(keys=keys, bytes=nbytes, applied_index=applied, disk_bytes=disk)

    def digest(self) -> str:
        d = engine.RecordDigest()
        skip = len(engine.DATA_PREFIX)
        with self._guard:
            it = self._db.iterator(start=engine.DATA_PREFIX, stop=engine.DATA_END)
            try:
                for k, v in it:
                    d.add(k[skip:], v)
            finally:
                it.close()
        return d.hexdigest()

    def iter_dump(self) -> Iterator[tuple[bytes, bytes]]:
        """The snapshot is taken now; iterating later is safe on any one thread. If the store is
        swapped or closed meanwhile, iteration raises RuntimeError (never ends early silently)."""
        with self._guard:
            snap = self._db.snapshot()
            it = snap.iterator()
        return _drain(snap, it)

    def load_dump(self, items: Iterable[tuple[bytes, bytes]]) -> None:
        tmp = self._path + ".loading"
        self.destroy(tmp)
        newdb = _open_db(tmp, self._options, error_if_exists=True)
        try:
            state = _fill(newdb, engine.ordered_items(items))
        except BaseException:
            newdb.close()
            self.destroy(tmp)
            raise
        newdb.close()
        self._swap_in(tmp, state)

    def load_snapshot(self, path: str) -> bytes:
        """Load a snapshot file, verifying it while loading; on ``SnapshotCorrupt`` (or any
        error) the live store is untouched. Returns the snapshot's header."""
        return snapshot.load_file(path, self.load_dump)

    def close(self) -> None:
        """Close after a sync write: every apply is on disk once a store closed cleanly (applies
        themselves are not synced; see ``kvnode.storage.unsynced``)."""
        with self._guard.exclusive():
            self._db.put(engine.FORMAT_KEY, _FORMAT.pack(engine.LAYOUT_VERSION), sync=True)
            self._db.close()

    def _swap_in(self, tmp: str, state: tuple[int, int, int]) -> None:
        old = self._path + ".old"
        with self._guard.exclusive():
            self._db.close()
            try:
                self.destroy(old)
                os.rename(self._path, old)
                os.rename(tmp, self._path)
                files.fsync_dir(os.path.dirname(os.path.abspath(self._path)))
            finally:
                _recover_swap(self._path)
                self._db = _open_db(self._path, self._options)
                self._state = _read_state(self._db)
        log.info(
            "storage %s: loaded dump, applied index %d, %d keys", self._path, state[0], state[1]
        )


def _open_db(path: str, options: dict[str, Any], *, error_if_exists: bool = False) -> Any:
    db = plyvel.DB(path, create_if_missing=True, error_if_exists=error_if_exists, **options)
    raw = db.get(engine.FORMAT_KEY)
    if raw is None:
        db.put(engine.FORMAT_KEY, _FORMAT.pack(engine.LAYOUT_VERSION), sync=True)
    elif len(raw) != _FORMAT.size or _FORMAT.unpack(raw)[0] != engine.LAYOUT_VERSION:
        db.close()
        raise ValueError(f"storage {path}: unsupported layout {raw!r}")
    return db


def _read_state(db: Any) -> tuple[int, int, int]:
    raw = db.get(engine.APPLIED_KEY)
    applied = 0 if raw is None else engine.unpack_u64(raw)
    stats = db.get(engine.STATS_KEY)
    keys, nbytes = (0, 0) if stats is None else _STATS.unpack(stats)
    return applied, int(keys), int(nbytes)


def _recover_swap(path: str) -> None:
    """Finish or undo a ``load_dump`` swap that a crash interrupted.

    ``.loading`` is only renamed after it verified, so ``path`` missing with ``.old`` present
    means ``.loading`` is complete: finish the swap. ``path`` present: drop leftovers.
    """
    loading, old = path + ".loading", path + ".old"
    if not os.path.exists(path):
        if os.path.exists(old) and os.path.exists(loading):
            log.warning("storage %s: finishing an interrupted snapshot swap", path)
            os.rename(loading, path)
        elif os.path.exists(old):
            log.warning("storage %s: restoring the pre-swap data", path)
            os.rename(old, path)
        if os.path.exists(path):
            files.fsync_dir(os.path.dirname(os.path.abspath(path)))
    for leftover in (loading, old):
        if os.path.exists(leftover):
            shutil.rmtree(leftover, ignore_errors=True)


def _fill(db: Any, items: Iterable[tuple[bytes, bytes]]) -> tuple[int, int, int]:
    """Write dump ``items`` into an empty ``db``, rebuilding the expiry index and stats; the
    last write is a sync write so the loaded DB is durable before it is swapped in."""
    applied = keys = nbytes = 0
    wb = db.write_batch()
    pending = 0
    for key, value in items:
        if key.startswith(engine.DATA_PREFIX):  # fast path for the bulk of a dump
            kb = key[len(engine.DATA_PREFIX) :]
            exp = engine.check_record_item(kb, value)
            wb.put(key, value)
            if exp:
                wb.put(engine.expiry_item_key(exp, kb), b"")
            keys, nbytes = keys + 1, nbytes + len(kb) + len(value) - _HEAD
            pending += 1
        else:
            item = engine.parse_dump_item(key, value)
            if item.kind == "applied":
                applied = item.applied
        if pending >= _LOAD_BATCH:
            wb.write()
            wb, pending = db.write_batch(), 0
    wb.put(engine.APPLIED_KEY, engine.pack_u64(applied))
    wb.put(engine.STATS_KEY, _STATS.pack(keys, nbytes))
    wb.write()
    db.put(engine.FORMAT_KEY, _FORMAT.pack(engine.LAYOUT_VERSION), sync=True)
    return applied, keys, nbytes


def _drop_expiry(wb: Any, kb: bytes, old: bytes) -> None:
    (exp,) = _EXP.unpack_from(old, 8)
    if exp:
        wb.delete(engine.expiry_item_key(exp, kb))


def _prefix_stop(pb: bytes) -> bytes:
    """Exclusive upper bound of the data keys starting with ``pb``."""
    stripped = pb.rstrip(b"\xff")
    if not stripped:
        return engine.DATA_END
    return engine.DATA_PREFIX + stripped[:-1] + bytes([stripped[-1] + 1])


def _drain(snap: Any, it: Any) -> Iterator[tuple[bytes, bytes]]:
    try:
        yield from it
    finally:
        with contextlib.suppress(RuntimeError):
            it.close()
        with contextlib.suppress(RuntimeError):
            snap.close()
