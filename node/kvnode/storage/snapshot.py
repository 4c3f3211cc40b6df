"""Checksummed snapshot stream: PySyncObj's custom-serializer payload and the seeding stream.

PySyncObj's own snapshot transfer was seen to install an incomplete snapshot silently, so every
snapshot carries its item count and a SHA-256 over all its bytes, and no reader lets an engine
commit a load before both were checked.

Format (all integers big-endian)::

    magic     8 bytes  b"RKVSNAP\\x00"
    version   u32      1
    header    u32 length + bytes      (opaque to this module, e.g. pickled Raft metadata)
    items     repeated: u32 key length + key + u32 value length + value
    end       u32 0xFFFFFFFF          (end-of-items marker; no key is that long)
    trailer   u64 item count + 32 bytes SHA-256 of every byte before the trailer

Producing: ``SnapshotEncoder`` yields the stream as chunks (an HTTP response body, in a worker
thread); ``write_snapshot`` writes it to ``path + ".tmp"``, fsyncs, renames and fsyncs the
directory, so ``path`` is either absent, the previous snapshot or a complete new one.

Consuming: ``SnapshotDecoder.feed(chunk)`` is incremental (usable on an async HTTP body) and
returns the items completed by that chunk; ``finish()`` raises ``SnapshotCorrupt`` unless the
trailer arrived and verified. ``SnapshotReader`` wraps a file. Items are handed out BEFORE the
stream is verified: a consumer must stage them and commit only after ``finish()`` (which is what
``PartitionStore.load_dump`` does with ``SnapshotReader.items()``, which raises at its end).
The recommended receive path for a seeding stream is: body → file (``feed`` while writing to
fail fast) → ``store.load_snapshot(path)``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from kvnode.core import files

MAGIC = b"RKVSNAP\x00"
VERSION = 1
END_MARKER = 0xFFFFFFFF
MAX_FIELD_BYTES = 256 * 1024 * 1024
CHUNK_BYTES = 1 << 20

_U32 = struct.Struct(">I")
_TRAILER = struct.Struct(">Q32s")
_PREAMBLE = len(MAGIC) + _U32.size


class SnapshotCorrupt(Exception):
    """The snapshot is truncated, malformed, or its count or checksum does not match."""


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    count: int
    size_bytes: int
    sha256: str


class SnapshotEncoder:
    """Iterate to get the snapshot's bytes in chunks of about ``chunk_bytes``; ``info`` is set
    once the iteration has finished."""

    def __init__(
        self,
        *,
        header: bytes,
        items: Iterable[tuple[bytes, bytes]],
        chunk_bytes: int = CHUNK_BYTES,
    ) -> None:
        if len(header) > MAX_FIELD_BYTES:
            raise ValueError(f"snapshot header too large: {len(header)} bytes")
        self._header = header
        self._items = items
        self._chunk_bytes = chunk_bytes
        self.info: SnapshotInfo | None = None

    def __iter__(self) -> Iterator[bytes]:
        h = hashlib.sha256()
        size = count = 0
        buf = bytearray(MAGIC + _U32.pack(VERSION) + _U32.pack(len(self._header)) + self._header)
        for key, value in self._items:
            if len(key) > MAX_FIELD_BYTES or len(value) > MAX_FIELD_BYTES:
                raise ValueError(f"snapshot item too large: key {key[:32]!r}")
            buf += _U32.pack(len(key))
            buf += key
            buf += _U32.pack(len(value))
            buf += value
            count += 1
            if len(buf) >= self._chunk_bytes:
                chunk = bytes(buf)
                buf.clear()
                h.update(chunk)
                size += len(chunk)
                yield chunk
        buf += _U32.pack(END_MARKER)
        h.update(buf)
        digest = h.digest()
        buf += _TRAILER.pack(count, digest)
        size += len(buf)
        yield bytes(buf)
        self.info = SnapshotInfo(count=count, size_bytes=size, sha256=digest.hex())


def write_snapshot(
    path: str, *, header: bytes, items: Iterable[tuple[bytes, bytes]]
) -> SnapshotInfo:
    """Write a complete, fsynced snapshot at ``path`` (atomically replacing any old one)."""
    tmp = path + ".tmp"
    enc = SnapshotEncoder(header=header, items=items)
    try:
        with open(tmp, "wb") as f:
            for chunk in enc:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    files.fsync_dir(os.path.dirname(os.path.abspath(path)))
    assert enc.info is not None
    return enc.info


class SnapshotDecoder:
    """Incremental parser: ``feed`` chunks, collect items, then ``finish``.

    Lengths are bounded by ``max_field_bytes`` so garbage cannot make it buffer without limit.
    After a ``SnapshotCorrupt`` the decoder is unusable.
    """

    def __init__(self, *, max_field_bytes: int = MAX_FIELD_BYTES) -> None:
        self._buf = bytearray()
        self._pos = 0
        self._hash = hashlib.sha256()
        self._max = max_field_bytes
        self._header: bytes | None = None
        self._in_items = False
        self._count = 0
        self._size = 0
        self._done: SnapshotInfo | None = None

    @property
    def header(self) -> bytes | None:
        """The header, once enough bytes were fed to contain it."""
        return self._header

    def feed(self, chunk: bytes) -> list[tuple[bytes, bytes]]:
        """Consume ``chunk``; return the items it completed (possibly none)."""
        if self._done is not None:
            if chunk:
                raise SnapshotCorrupt("bytes after the snapshot trailer")
            return []
        self._size += len(chunk)
        self._buf += chunk
        out: list[tuple[bytes, bytes]] = []
        if self._header is None:
            self._parse_preamble()
        if self._header is not None:
            self._parse_items(out)
        self._compact()
        return out

    def finish(self) -> SnapshotInfo:
        """Verify the end of the stream; raise ``SnapshotCorrupt`` unless complete and intact."""
        if self._done is None:
            raise SnapshotCorrupt(
                f"snapshot truncated after {self._size} bytes ({self._count} items read)"
            )
        return self._done

    def _parse_preamble(self) -> None:
        if len(self._buf) < _PREAMBLE + _U32.size:
            if not MAGIC.startswith(bytes(self._buf[: len(MAGIC)])):
                raise SnapshotCorrupt("not a ringkv snapshot (bad magic)")
            return
        if bytes(self._buf[: len(MAGIC)]) != MAGIC:
            raise SnapshotCorrupt("not a ringkv snapshot (bad magic)")
        (version,) = _U32.unpack_from(self._buf, len(MAGIC))
        if version != VERSION:
            raise SnapshotCorrupt(f"unsupported snapshot version {version}")
        (hlen,) = _U32.unpack_from(self._buf, _PREAMBLE)
        if hlen > self._max:
            raise SnapshotCorrupt(f"header length {hlen} exceeds limit")
        start = _PREAMBLE + _U32.size
        if len(self._buf) < start + hlen:
            return
        self._header = bytes(self._buf[start : start + hlen])
        self._pos = start + hlen
        self._in_items = True

    def _parse_items(self, out: list[tuple[bytes, bytes]]) -> None:
        """Parse every complete item in the buffer (hot loop: locals, no helper calls)."""
        if not self._in_items:
            self._parse_trailer()
            return
        buf, pos, size, limit = self._buf, self._pos, len(self._buf), self._max
        unpack, count = _U32.unpack_from, 0
        try:
            while size - pos >= 4:
                (klen,) = unpack(buf, pos)
                if klen == END_MARKER:
                    pos += 4
                    self._in_items = False
                    break
                if klen > limit:
                    raise SnapshotCorrupt(f"item key length {klen} exceeds limit")
                vlpos = pos + 4 + klen
                if size < vlpos + 4:
                    break
                (vlen,) = unpack(buf, vlpos)
                if vlen > limit:
                    raise SnapshotCorrupt(f"item value length {vlen} exceeds limit")
                end = vlpos + 4 + vlen
                if size < end:
                    break
                out.append((bytes(buf[pos + 4 : vlpos]), bytes(buf[vlpos + 4 : end])))
                pos = end
                count += 1
        finally:
            self._pos, self._count = pos, self._count + count
        if not self._in_items:
            self._parse_trailer()

    def _parse_trailer(self) -> None:
        self._hash.update(memoryview(self._buf)[: self._pos])
        del self._buf[: self._pos]
        self._pos = 0
        if len(self._buf) < _TRAILER.size:
            return
        if len(self._buf) > _TRAILER.size:
            raise SnapshotCorrupt("bytes after the snapshot trailer")
        count, digest = _TRAILER.unpack(self._buf)
        if count != self._count:
            raise SnapshotCorrupt(f"snapshot trailer says {count} items, read {self._count}")
        if digest != self._hash.digest():
            raise SnapshotCorrupt("snapshot checksum mismatch")
        self._buf.clear()
        self._done = SnapshotInfo(count=count, size_bytes=self._size, sha256=digest.hex())

    def _compact(self) -> None:
        """Hash and drop consumed bytes (the trailer is never hashed: it is kept until complete)."""
        if self._in_items and self._pos:
            self._hash.update(memoryview(self._buf)[: self._pos])
            del self._buf[: self._pos]
            self._pos = 0


class SnapshotReader:
    """Reads a snapshot file: ``header`` at once, then ``items()`` which raises
    ``SnapshotCorrupt`` at its end unless the whole file verified.

    Use as a context manager (closes the file); ``info`` is set after ``items()`` finished.
    """

    def __init__(self, f: BinaryIO, *, chunk_bytes: int = CHUNK_BYTES) -> None:
        self._f = f
        self._chunk_bytes = chunk_bytes
        self._dec = SnapshotDecoder()
        self._pending: list[tuple[bytes, bytes]] = []
        self._eof = False
        self.info: SnapshotInfo | None = None
        while self._dec.header is None and not self._eof:
            self._read_chunk()
        if self._dec.header is None:
            raise SnapshotCorrupt("snapshot truncated before the end of its header")
        self.header: bytes = self._dec.header

    @classmethod
    def open(cls, path: str, *, chunk_bytes: int = CHUNK_BYTES) -> SnapshotReader:
        f = open(path, "rb")  # noqa: SIM115 - owned by the reader, closed by close()
        try:
            return cls(f, chunk_bytes=chunk_bytes)
        except BaseException:
            f.close()
            raise

    def _read_chunk(self) -> None:
        chunk = self._f.read(self._chunk_bytes)
        if not chunk:
            self._eof = True
            return
        self._pending.extend(self._dec.feed(chunk))

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        while True:
            pending, self._pending = self._pending, []
            yield from pending
            if self._eof:
                break
            self._read_chunk()
        self.info = self._dec.finish()

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> SnapshotReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load_file(path: str, load: Callable[[Iterator[tuple[bytes, bytes]]], None]) -> bytes:
    """Feed the items of the snapshot file at ``path`` to ``load`` (a ``load_dump``) and return
    the header. A malformed item (ValueError from ``load``) is reported as ``SnapshotCorrupt``
    too: whatever is wrong with the file, the caller sees one error type and no change."""
    with SnapshotReader.open(path) as reader:
        try:
            load(reader.items())
        except ValueError as e:
            raise SnapshotCorrupt(f"snapshot {path}: {e}") from e
        return reader.header


def read_header(path: str) -> bytes:
    """Only the header of the snapshot at ``path`` (e.g. to decide whether to load it at all).

    NOT a verification of the file: ``load_snapshot`` / ``SnapshotReader.items()`` do that.
    """
    with SnapshotReader.open(path, chunk_bytes=64 * 1024) as reader:
        return reader.header


def read_snapshot(path: str) -> tuple[bytes, list[tuple[bytes, bytes]], SnapshotInfo]:
    """Read and verify a whole (small) snapshot into memory; for tests and tools."""
    with SnapshotReader.open(path) as reader:
        items = list(reader.items())
        assert reader.info is not None
        return reader.header, items, reader.info
