"""One write-ahead log per node for ``durability=fsync``: one disk sync per ticker loop for every
journal change of every group, instead of one per appended entry per group.

Each group keeps PySyncObj's own journal file (``FileJournal``, an mmap written in place, never
synced on the hot path). Every change made to it — an appended entry, a truncated tail — is also
a record of the node's WAL, and the ticker syncs the WAL once per loop before it lets any Raft
message of that loop leave the process and before any entry is applied (``ticker`` and
``compat``): a follower answers append-entries, a leader counts itself and a client hears of its
write only for entries that are on disk. At 16 partitions a loop typically carries entries of
several groups (and of the several replicas a node hosts), so they share one ``fdatasync``.

What makes a group's journal recoverable from its file plus the WAL:
- A ``BASE`` record names the state of the file at a moment it was durable: its end offset, its
  entry count and its first and last (index, term). One is written when the journal opens (after
  syncing the file), when the WAL starts a new segment (every open journal's file is synced
  first), and after the journal was rewritten.
- Between two bases the file only changes at its end (appends, and truncations followed by
  appends), so the bytes before the base offset stay as they were.
- Rewrites of the whole file (log compaction, a snapshot installed from the leader) write the
  new content beside it and sync it, write its base and sync the WAL, and only then rename it
  over the old file: after a crash the WAL's last base describes the file, or the new content
  waiting beside it (recovery then finishes the rename).
- A ``CLOSE`` record (the journal closed, its file synced) means the file is used as it is.
- ``recover`` (at node start, before any group opens) rebuilds each journal named in the WAL:
  the file's records up to the last base, then the WAL's changes after it. A torn record at the
  end of the WAL was never synced, so nothing it carried was acknowledged.

Record: payload length (u32), CRC-32 of the payload (u32), payload = op (u8), journal name length
(u16), journal name (its path relative to the data directory), body.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from kvnode.core import files

log = logging.getLogger(__name__)

DIR = "raft-wal"
SEGMENT_BYTES = 64 << 20
_SEGMENT = re.compile(r"^(\d{10})\.wal$")

ADD, TRUNC, BASE, CLOSE = 1, 2, 3, 4
_HEAD = struct.Struct("<II")
_OP = struct.Struct("<BH")
_ADD = struct.Struct("<QQ")
_TRUNC = struct.Struct("<Q")
_BASE = struct.Struct("<QQQQQQ")

Entry = tuple[bytes, int, int]  # (command, index, term), as PySyncObj's journal holds them


@dataclass(frozen=True, slots=True)
class Base:
    """A journal file's durable state: end offset, entry count, first and last (index, term)."""

    offset: int
    count: int
    first: tuple[int, int]
    last: tuple[int, int]

    def encode(self) -> bytes:
        return _BASE.pack(self.offset, self.count, *self.first, *self.last)

    @classmethod
    def decode(cls, body: bytes) -> Base:
        v = _BASE.unpack(body)
        return cls(v[0], v[1], (v[2], v[3]), (v[4], v[5]))

    @classmethod
    def of(cls, entries: list[Entry], offset: int) -> Base:
        if not entries:
            return cls(offset, 0, (0, 0), (0, 0))
        return cls(
            offset, len(entries), (entries[0][1], entries[0][2]), (entries[-1][1], entries[-1][2])
        )


class Checkpointable(Protocol):
    def checkpoint(self) -> Base:
        """Sync the journal file; its base."""
        ...


# -- the journal file format (PySyncObj's FileJournal; kvnode.raft.compat checks these) -----
IDENTITY_SIZE = 36  # application name, version, format version
LAST_RECORD_OFFSET_OFFSET = 36  # u32: where the records end
FIRST_RECORD_OFFSET = 40  # records: size (u32), index (u64), term (u64), command, size (u32)


def command_bytes(command: Any) -> bytes:
    return command.encode() if isinstance(command, str) else bytes(command)


def journal_bytes(identity: bytes, entries: Iterable[Entry]) -> tuple[bytes, int]:
    """A FileJournal file holding ``entries`` under the ``identity`` header of an existing
    journal (its first ``IDENTITY_SIZE`` bytes), and its end offset."""
    body = bytearray()
    for command, idx, term in entries:
        data = struct.pack("<QQ", idx, term) + command_bytes(command)
        size = struct.pack("<I", len(data))
        body += size + data + size
    end = FIRST_RECORD_OFFSET + len(body)
    return identity[:IDENTITY_SIZE] + struct.pack("<I", end) + bytes(body), end


def read_journal(data: bytes, *, limit: int | None = None) -> tuple[list[Entry], int]:
    """The well-formed records of a FileJournal file, up to ``limit`` (default: the offset its
    header names), stopping at the first damaged or out-of-sequence one; and where they end."""
    first = FIRST_RECORD_OFFSET
    if len(data) < first:
        return [], first
    if limit is None:
        limit = struct.unpack_from("<I", data, LAST_RECORD_OFFSET_OFFSET)[0]
    limit = min(limit, len(data))
    entries: list[Entry] = []
    pos = first
    while pos + 4 <= limit:
        size = struct.unpack_from("<I", data, pos)[0]
        end = pos + 4 + size
        if size < 16 or end + 4 > limit or struct.unpack_from("<I", data, end)[0] != size:
            break
        idx, term = struct.unpack_from("<QQ", data, pos + 4)
        if entries and idx != entries[-1][1] + 1:
            break
        entries.append((bytes(data[pos + 20 : end]), idx, term))
        pos = end + 4
    return entries, pos


REWRITE_SUFFIX = ".rewrite"


def write_journal(path: str, identity: bytes, entries: list[Entry]) -> int:
    """Replace the journal file at ``path`` with ``entries`` (synced, atomic); its end offset."""
    end = prepare_journal(path, identity, entries)
    install_journal(path)
    return end


def prepare_journal(path: str, identity: bytes, entries: list[Entry]) -> int:
    """Write ``entries`` as the next content of the journal at ``path`` beside it (synced), to
    be installed by ``install_journal``; its end offset."""
    data, end = journal_bytes(identity, entries)
    files.write_file(path + REWRITE_SUFFIX, data, durable=True)
    return end


def install_journal(path: str) -> None:
    os.replace(path + REWRITE_SUFFIX, path)
    files.fsync_dir(os.path.dirname(os.path.abspath(path)))


# -- the log -------------------------------------------------------------------------------
class NodeWal:
    """The node's WAL (ticker thread only): records are buffered and written with one
    ``fdatasync`` by ``sync``."""

    def __init__(self, data_dir: str, *, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.root = data_dir
        self.dir = os.path.join(data_dir, DIR)
        os.makedirs(self.dir, exist_ok=True)
        self._segment_bytes = segment_bytes
        old = segments(self.dir)
        self._seq = (old[-1][0] if old else 0) + 1
        self._fd = self._open_segment(self._seq)
        self._size = 0
        self._buf = bytearray()
        self._journals: dict[str, Checkpointable] = {}
        self.syncs = 0  # fdatasync calls (observability, tests)
        self.records = 0

    def _open_segment(self, seq: int) -> int:
        fd = os.open(segment_path(self.dir, seq), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        files.fsync_dir(self.dir)
        return fd

    @property
    def dirty(self) -> bool:
        return bool(self._buf)

    def name(self, journal_path: str) -> str:
        return os.path.relpath(os.path.abspath(journal_path), os.path.abspath(self.root))

    # -- records -----------------------------------------------------------------------------
    def _record(self, op: int, name: str, body: bytes) -> None:
        raw = name.encode()
        payload = _OP.pack(op, len(raw)) + raw + body
        self._buf += _HEAD.pack(len(payload), zlib.crc32(payload)) + payload
        self.records += 1

    def add(self, name: str, command: Any, idx: int, term: int) -> None:
        self._record(ADD, name, _ADD.pack(idx, term) + command_bytes(command))

    def trunc(self, name: str, entry_from: int) -> None:
        self._record(TRUNC, name, _TRUNC.pack(entry_from))

    def base(self, name: str, base: Base) -> None:
        self._record(BASE, name, base.encode())

    def sync(self) -> None:
        """Write and ``fdatasync`` what was recorded since the last sync (nothing: no-op)."""
        if not self._buf:
            return
        files.write_all(self._fd, self._buf)
        os.fdatasync(self._fd)
        self._size += len(self._buf)
        self._buf = bytearray()
        self.syncs += 1

    # -- journals and segments ---------------------------------------------------------------
    def register(self, name: str, journal: Checkpointable) -> None:
        self._journals[name] = journal

    def forget(self, name: str) -> None:
        """The journal closed (its file synced): recovery uses its file as it is, even if a
        later journal of the same name never got a base to disk (a replica dropped and
        opened again)."""
        self._journals.pop(name, None)
        self._record(CLOSE, name, b"")
        self.sync()

    def maybe_rotate(self) -> None:
        if self._size >= self._segment_bytes:
            self.rotate()

    def rotate(self) -> None:
        """Start a new segment holding a base of every open journal (each file synced first),
        then delete the older segments: nothing in them is needed any more."""
        self.sync()
        old_fd, old_seq = self._fd, self._seq
        self._seq += 1
        self._fd = self._open_segment(self._seq)
        self._size = 0
        for name, journal in self._journals.items():
            self.base(name, journal.checkpoint())
        self.sync()
        os.close(old_fd)
        for seq, path in segments(self.dir):
            if seq <= old_seq:
                os.unlink(path)
        files.fsync_dir(self.dir)

    def close(self) -> None:
        self.sync()
        os.close(self._fd)


def segment_path(directory: str, seq: int) -> str:
    return os.path.join(directory, f"{seq:010d}.wal")


def segments(directory: str) -> list[tuple[int, str]]:
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    found = []
    for n in names:
        m = _SEGMENT.match(n)
        if m:
            found.append((int(m.group(1)), os.path.join(directory, n)))
    return sorted(found)


def records(data: bytes) -> Iterator[tuple[int, str, bytes]]:
    """(op, journal name, body) of every intact record of a segment, up to a torn tail."""
    pos = 0
    while pos + _HEAD.size <= len(data):
        size, crc = _HEAD.unpack_from(data, pos)
        payload = data[pos + _HEAD.size : pos + _HEAD.size + size]
        if len(payload) != size or size < _OP.size or zlib.crc32(payload) != crc:
            return
        op, name_len = _OP.unpack_from(payload)
        name = payload[_OP.size : _OP.size + name_len].decode()
        yield op, name, payload[_OP.size + name_len :]
        pos += _HEAD.size + size


# -- recovery ------------------------------------------------------------------------------
@dataclass(slots=True)
class History:
    """What the WAL's segments say of one journal: its last base (None: none since it last
    closed, or ever) and the changes recorded after it, in order."""

    base: Base | None = None
    changes: list[tuple[int, bytes]] = field(default_factory=list)


@dataclass(slots=True)
class Recovery:
    """What ``recover`` did, per journal name."""

    rebuilt: list[str] = field(default_factory=list)  # the file lacked synced changes
    synced: list[str] = field(default_factory=list)  # the file held everything: synced
    replaced: list[str] = field(default_factory=list)  # no longer matched its last base
    missing: list[str] = field(default_factory=list)  # no file (its replica was dropped)


def histories(data_dir: str) -> dict[str, History]:
    """Every journal the data directory's WAL segments name, with what they say of it."""
    found: dict[str, History] = {}
    for _seq, path in segments(os.path.join(data_dir, DIR)):
        with open(path, "rb") as f:
            for op, name, body in records(f.read()):
                history = found.setdefault(name, History())
                if op == BASE:
                    history.base, history.changes = Base.decode(body), []
                elif op == CLOSE:
                    history.base, history.changes = None, []
                else:
                    history.changes.append((op, body))
    return found


def recover(data_dir: str) -> Recovery:
    """Make every journal named in the WAL's segments hold exactly what the WAL made durable,
    on disk; then delete the segments. Before any group of the node opens."""
    directory = os.path.join(data_dir, DIR)
    found = segments(directory)
    done = Recovery()
    for name, history in histories(data_dir).items():
        _recover_one(os.path.join(data_dir, name), name, history, done)
    for _seq, path in found:
        os.unlink(path)
    if found:
        files.fsync_dir(directory)
    return done


def _recover_one(path: str, name: str, history: History, done: Recovery) -> None:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        done.missing.append(name)
        return
    if len(data) < FIRST_RECORD_OFFSET:
        log.error("%s: no journal header; left as it is", path)
        return
    base = history.base
    if (
        base is not None
        and not _matches(data, base)
        and _matches(_read(path + REWRITE_SUFFIX), base)
    ):
        # Rewritten (compaction, an installed snapshot): the new content and its base were on
        # disk, the rename was not.
        install_journal(path)
        with open(path, "rb") as f:
            data = f.read()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path + REWRITE_SUFFIX)  # a rewrite whose base never reached the WAL
    whole, whole_end = read_journal(data)
    header_end = struct.unpack_from("<I", data, LAST_RECORD_OFFSET_OFFSET)[0]
    if base is None:
        # Synced when it opened (or closed); a base written after that never made it to disk,
        # so neither did any change after it (records are synced in order).
        if history.changes:
            log.error("%s: WAL changes without a base are ignored", path)
        entries = whole
    elif not _matches(data, base):
        log.error("%s: the journal does not match its last WAL base %s; used as it is", path, base)
        done.replaced.append(name)
        entries = whole
    else:
        entries = replay(read_journal(data, limit=base.offset)[0], history.changes)
    if entries == whole and whole_end == header_end:
        files.fsync_path(path, data_only=True)
        done.synced.append(name)
        return
    write_journal(path, data[:IDENTITY_SIZE], entries)
    done.rebuilt.append(name)
    log.warning("%s: journal rebuilt from the node's WAL (%d entries)", path, len(entries))


def _matches(data: bytes, base: Base) -> bool:
    prefix, end = read_journal(data, limit=base.offset)
    return end == base.offset and Base.of(prefix, end) == base


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return b""


def replay(entries: list[Entry], changes: list[tuple[int, bytes]]) -> list[Entry]:
    out = list(entries)
    for op, body in changes:
        if op == ADD:
            idx, term = _ADD.unpack_from(body)
            out.append((bytes(body[_ADD.size :]), idx, term))
        elif op == TRUNC:
            del out[_TRUNC.unpack(body)[0] :]
    return out
