"""The storage contract of one partition replica, and the item layout every engine shares.

``PartitionStore`` is what the Raft layer (the command processor, the replica's snapshot hooks)
and the service's reads depend on. Two engines implement it: ``LevelDBStore`` (production, one
LevelDB per partition replica) and ``MemoryStore`` (unit tests of the layers above).

What must stay true in every engine:

* ``apply`` is the only mutation and is ONE atomic write of the data, the expiry index and the
  applied Raft index, so a journal entry replayed after a crash is recognised (``index <=
  applied_index()``) and applied exactly once.
* Keys are ordered by their UTF-8 bytes (``surrogatepass``, so no string can make encoding fail).
* ``digest`` covers the user records only, so two replicas that applied the same log prefix have
  equal digests whatever their physical layout or history of snapshots.
* ``iter_dump`` / ``load_dump`` speak the same byte items in every engine (the layout below), so a
  snapshot taken from one engine loads into the other.

Item layout (also LevelDB's on-disk layout; see ``kvnode.storage.leveldb``)::

    d\\x00<utf8 key>                    -> record: u64 version, u64 expires_at_ms (0 = none), value
    x\\x00<u64 BE expires_at><utf8 key> -> b""   (expiry index, ordered by expiry time)
    m\\x00applied                       -> u64 BE last applied Raft index
    m\\x00stats                         -> u64 BE key count, u64 BE logical bytes (LevelDB only)
    m\\x00format                        -> u32 BE layout version (LevelDB only)
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

from kvnode.core import model

DATA_PREFIX = b"d\x00"
DATA_END = b"d\x01"
EXPIRY_PREFIX = b"x\x00"
EXPIRY_END = b"x\x01"
META_PREFIX = b"m\x00"
APPLIED_KEY = b"m\x00applied"
STATS_KEY = b"m\x00stats"
FORMAT_KEY = b"m\x00format"
LAYOUT_VERSION = 1

_RECORD_HEAD = struct.Struct(">QQ")
_U64 = struct.Struct(">Q")
_U32 = struct.Struct(">I")
_MAX_U64 = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class StoreStats:
    """Cheap size figures of one partition replica.

    ``keys`` and ``bytes`` (UTF-8 key + value bytes of live and not-yet-removed expired records)
    are exact counters maintained by ``apply``; ``disk_bytes`` is the engine's estimate of its
    on-disk size (0 for memory, LevelDB's sstable estimate, which ignores the memtable).
    """

    keys: int
    bytes: int
    applied_index: int
    disk_bytes: int = 0


class PartitionStore(Protocol):
    """One partition replica's keyspace.

    Reads (``get``, ``scan``, ``stats``, ``applied_index``) may run on any thread concurrently
    with ``apply`` and ``load_dump`` (the Raft tick thread); engines must make that safe.
    """

    def applied_index(self) -> int:
        """Last Raft index applied (0 for a new store)."""
        ...

    def get(self, key: str) -> model.Record | None:
        """The raw record, possibly expired: callers decide with ``Record.expired(now_ms)``."""
        ...

    def scan(
        self, *, prefix: str = "", start_after: str | None = None, limit: int
    ) -> list[tuple[str, model.Record]]:
        """Up to ``limit`` records in UTF-8 byte order of keys starting with ``prefix`` and
        strictly greater than ``start_after``; expired records included (caller filters)."""
        ...

    def expired_keys(self, now_ms: int, limit: int) -> list[str]:
        """Up to ``limit`` keys with ``expires_at_ms <= now_ms``, oldest expiry first, from the
        expiry index (never a full scan)."""
        ...

    def next_expiry_ms(self) -> int | None:
        """The earliest ``expires_at_ms`` of any record (None: no record has a TTL)."""
        ...

    def apply(
        self, index: int, *, puts: Mapping[str, model.Record], deletes: Iterable[str]
    ) -> None:
        """ONE atomic write: deletes, puts, expiry-index upkeep and ``applied_index = index``.

        ``index`` must exceed ``applied_index()`` and a key may not be both put and deleted;
        otherwise ValueError and nothing is written. Deleting an absent key is a no-op.
        """
        ...

    def stats(self) -> StoreStats: ...

    def digest(self) -> str:
        """Hex SHA-256 over the user records (key, value, version, expiry) in key order."""
        ...

    def iter_dump(self) -> Iterator[tuple[bytes, bytes]]:
        """Every internal item in key order, from one consistent snapshot taken at call time."""
        ...

    def load_dump(self, items: Iterable[tuple[bytes, bytes]]) -> None:
        """Replace the whole content with ``items`` atomically.

        If iterating ``items`` raises (e.g. ``SnapshotCorrupt`` from a snapshot reader) or an
        item is malformed, the exception propagates and the live content is left untouched.
        """
        ...

    def load_snapshot(self, path: str) -> bytes:
        """Verify and load a snapshot file (``kvnode.storage.snapshot``); return its header."""
        ...

    def close(self) -> None: ...


def check_apply(
    applied: int, index: int, puts: Mapping[str, model.Record], dels: list[str]
) -> None:
    """The ``apply`` preconditions every engine enforces before writing anything."""
    if index <= applied:
        raise ValueError(f"apply index {index} is not above applied index {applied}")
    both = set(puts).intersection(dels)
    if both:
        raise ValueError(f"keys both put and deleted in one apply: {sorted(both)[:3]}")


def key_bytes(key: str) -> bytes:
    """A key's UTF-8 bytes; ``surrogatepass`` so a lone surrogate never fails a Raft apply."""
    return key.encode("utf-8", "surrogatepass")


def key_str(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogatepass")


def encode_record(rec: model.Record) -> bytes:
    """``u64 version, u64 expires_at_ms (0 = none), UTF-8 value``; ValueError if unrepresentable."""
    exp = rec.expires_at_ms
    if exp is not None and not 0 < exp <= _MAX_U64:
        raise ValueError(f"expires_at_ms out of range: {exp}")
    if not 0 <= rec.version <= _MAX_U64:
        raise ValueError(f"version out of range: {rec.version}")
    return _RECORD_HEAD.pack(rec.version, exp or 0) + rec.value.encode("utf-8", "surrogatepass")


def decode_record(raw: bytes) -> model.Record:
    """Inverse of ``encode_record``; ValueError (incl. struct.error) on malformed bytes."""
    if len(raw) < _RECORD_HEAD.size:
        raise ValueError(f"record too short: {len(raw)} bytes")
    version, exp = _RECORD_HEAD.unpack_from(raw)
    value = raw[_RECORD_HEAD.size :].decode("utf-8", "surrogatepass")
    return model.Record(value=value, version=version, expires_at_ms=exp or None)


def check_record_item(kb: bytes, raw: bytes) -> int:
    """Validate a data item (UTF-8 key, well-formed record) without building a Record; return
    its expiry (0 = none). ValueError if malformed. The bulk-load fast path of dumps."""
    if len(raw) < _RECORD_HEAD.size:
        raise ValueError(f"record too short: {len(raw)} bytes")
    kb.decode("utf-8", "surrogatepass")
    raw[_RECORD_HEAD.size :].decode("utf-8", "surrogatepass")
    return int(_U64.unpack_from(raw, 8)[0])


def expiry_item_key(expires_at_ms: int, kb: bytes) -> bytes:
    return EXPIRY_PREFIX + _U64.pack(expires_at_ms) + kb


def expiry_bound(now_ms: int) -> bytes:
    """The first expiry-index key NOT expired at ``now_ms`` (exclusive upper bound of a scan)."""
    if now_ms >= _MAX_U64:
        return EXPIRY_END
    return EXPIRY_PREFIX + _U64.pack(max(now_ms, -1) + 1)


def pack_u64(n: int) -> bytes:
    return _U64.pack(n)


def unpack_u64(raw: bytes) -> int:
    if len(raw) != _U64.size:
        raise ValueError(f"expected 8 bytes, got {len(raw)}")
    return int(_U64.unpack(raw)[0])


class RecordDigest:
    """Incremental ``digest``: SHA-256 over ``u32 len, key, u32 len, encoded record`` per record.

    The record encoding is canonical, so engines may feed raw stored bytes without decoding.
    """

    __slots__ = ("_h",)

    def __init__(self) -> None:
        self._h = hashlib.sha256(b"ringkv-records-v1")

    def add(self, kb: bytes, encoded: bytes) -> None:
        self._h.update(_U32.pack(len(kb)))
        self._h.update(kb)
        self._h.update(_U32.pack(len(encoded)))
        self._h.update(encoded)

    def hexdigest(self) -> str:
        return self._h.hexdigest()


def dump_digest(items: Iterable[tuple[bytes, bytes]]) -> tuple[str, int]:
    """(digest, record count) of a dump (``iter_dump``): the same value ``digest()`` gives for
    the store the dump was taken from."""
    d = RecordDigest()
    skip = len(DATA_PREFIX)
    count = 0
    for key, value in items:
        if key.startswith(DATA_PREFIX):
            d.add(key[skip:], value)
            count += 1
    return d.hexdigest(), count


@dataclass(frozen=True, slots=True)
class DumpItem:
    """One dump item, classified: a user ``record`` (``key`` = UTF-8 key bytes), the ``applied``
    index, or ``derived`` (expiry index, stats, format: the loading engine rebuilds those)."""

    kind: Literal["record", "applied", "derived"]
    key: bytes = b""
    record: model.Record | None = None
    applied: int = 0


def parse_dump_item(key: bytes, value: bytes) -> DumpItem:
    """Classify and fully decode one dump item; ValueError if malformed or unknown.

    Loaders call it on every item before swapping anything in, so a bad dump is refused whole.
    """
    if key.startswith(DATA_PREFIX):
        kb = key[len(DATA_PREFIX) :]
        key_str(kb)
        return DumpItem("record", key=kb, record=decode_record(value))
    if key == APPLIED_KEY:
        return DumpItem("applied", applied=unpack_u64(value))
    if key.startswith(EXPIRY_PREFIX) or key in (STATS_KEY, FORMAT_KEY):
        return DumpItem("derived")
    raise ValueError(f"unknown dump item key {key[:32]!r}")


def ordered_items(items: Iterable[tuple[bytes, bytes]]) -> Iterator[tuple[bytes, bytes]]:
    """Pass ``items`` through, raising ValueError unless keys strictly increase (which rules out
    duplicates, so key counts rebuilt from a dump are exact)."""
    prev: bytes | None = None
    for key, value in items:
        if prev is not None and key <= prev:
            raise ValueError(f"dump items out of order at {key[:32]!r}")
        prev = key
        yield key, value
