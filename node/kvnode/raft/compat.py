"""Every change ringkv makes to PySyncObj's private internals, in one place, checked at import.

PySyncObj has no extension points for what we need, so we override name-mangled methods and
read or write its private attributes. That is only sound against the exact code we read, so at
import this module checks the installed version (pinned in pyproject) and the presence of every
private name it touches, and raises ``PySyncObjIncompatible`` naming each missing one: an upgrade
fails loudly at start instead of silently running without a fix.

What lives here:

* ``facade_poller``: PySyncObj's ``createPoller`` is looked up in ``pysyncobj.syncobj`` at
  construction; the shared ticker (``kvnode.raft.ticker``) swaps in a per-group facade.
* ``SyncedJournalPath``: ``createJournal`` is wrapped so ``durability=fsync`` gets a journal
  that syncs each appended entry and the term/vote file before PySyncObj answers, and every
  file journal stores its commit index only when it changed (``QuietFileJournal``).
* ``CompatSyncObj``: the base class of a replica. It applies Raft §5.3 to append-entries
  (``kvnode.raft.appendfix``), adds pre-vote with leader stickiness (``kvnode.raft.prevote``),
  the probe rounds of ReadIndex (``kvnode.raft.readindex``), and the feature handshake that
  tells a leader whether every peer decodes grouped entries (``group_commit_ok``).
* ``atomicReplace`` in the serializer: a snapshot received from the leader is fsynced before it
  replaces the old one (stores are rebuilt from it after a host crash).
* ``getEncryptor`` (Raft encryption, ``KVNODE_RAFT_PASSWORD_FILE``): the key derivation is
  cached per password, and a message that fails to authenticate is logged before PySyncObj
  drops its connection silently.
* ``zlib`` in ``pysyncobj.tcp_connection``: Raft messages are framed as zlib streams of stored
  (uncompressed) blocks (``RaftFrames``): PySyncObj's ``zlib.compress(data, 3)`` set up a
  fresh 256 KiB deflate state for every message, 50-100 us of CPU on the ticker thread even for
  a 60-byte heartbeat answer. Any zlib stream still decodes, so older releases interoperate.
* ``TcpConnection.__processConnectionTimeout``: a quiesced group's connections are not
  declared dead for carrying nothing (``_connection_timeout_unless_quiesced``).
* Fault injection used by the integration tests (cutting one Raft link, sending a raw message,
  rewinding a leader's next index): it touches private transport state, so it is checked too.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
import time
import types
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pysyncobj import SyncObj
from pysyncobj import config as pso_config
from pysyncobj import journal as pso_journal
from pysyncobj import monotonic as pso_monotonic
from pysyncobj import node as pso_node
from pysyncobj import pickle as pso_pickle
from pysyncobj import poller as pso_poller
from pysyncobj import serializer as pso_serializer
from pysyncobj import syncobj as pso_syncobj
from pysyncobj import tcp_connection as pso_tcp_connection
from pysyncobj import transport as pso_transport
from pysyncobj import version as pso_version

from kvnode.core import files
from kvnode.raft import appendfix, followerread, prevote, quiesce, readindex
from kvnode.raft import wal as wal_mod

log = logging.getLogger(__name__)

REQUIRED_VERSION = "0.3.17"

# What this release's replicas understand beyond the previous release; a leader asks its peers
# (``FEATURES_ASK``, ignored by PySyncObj and by older ringkv releases) and uses a feature only
# once every peer confirmed it (``FEATURES``).
FEATURE_GROUP_COMMIT = "group_commit"
FEATURE_QUIESCE = quiesce.FEATURE
FEATURE_FOLLOWER_READ = followerread.FEATURE
FEATURES_ASK = "rkv_features_ask"
FEATURES = "rkv_features"
_FEATURE_ASK_EVERY_S = 0.5
_FEATURE_VALID_S = 5.0  # a confirmation is trusted this long; asked again before it lapses
# Messages a quiesced group handles without waking (see CompatSyncObj.__onMessageReceived).
_ANSWERED_ASLEEP = frozenset(
    {
        quiesce.BEACON,
        readindex.PROBE,
        readindex.ACK,
        followerread.ASK,
        followerread.INDEX,
        FEATURES_ASK,
        FEATURES,
    }
)


class PySyncObjIncompatible(ImportError):
    """The installed PySyncObj is not the one ringkv's patches were written against."""


# -- the import-time check ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Requirement:
    """``name`` must exist on ``owner``: as an attribute (``attr``), or, for instance attributes
    set in methods, among the names the owner's code uses (``code``)."""

    owner: str
    name: str
    kind: str = "attr"


def _req(owner: str, kind: str, names: str) -> list[Requirement]:
    return [Requirement(owner, n, kind) for n in names.split()]


REQUIREMENTS: tuple[Requirement, ...] = (
    *_req("pysyncobj.syncobj", "attr", "createPoller createJournal getEncryptor _RAFT_STATE"),
    *_req("TcpConnection", "code", "encrypt_at_time extract_timestamp decrypt"),
    *_req("TcpConnection", "attr", "send state"),
    *_req("TcpConnection", "code", "zlib compress decompress"),
    *_req("TcpConnection", "attr", "_TcpConnection__processConnectionTimeout"),
    *_req("TcpConnection", "code", "_TcpConnection__poller _TcpConnection__lastReadTime"),
    *_req("pysyncobj.tcp_connection", "attr", "zlib"),
    *_req("pysyncobj.tcp_connection", "attr", "CONNECTION_STATE"),
    *_req("pysyncobj.journal", "attr", "FileJournal"),
    *_req("pysyncobj.poller", "attr", "Poller POLL_EVENT_TYPE"),
    *_req("pysyncobj.config", "attr", "SERIALIZER_STATE"),
    *_req("pysyncobj.pickle", "attr", "loads"),
    *_req("pysyncobj.serializer", "attr", "atomicReplace"),
    *_req("pysyncobj.monotonic", "attr", "monotonic"),
    *_req(
        "FileJournal",
        "attr",
        "add clear setCurrentTerm deleteEntriesFrom deleteEntriesTo flush setRaftCommitIndex "
        "getRaftCommitIndex onOneSecondTimer _destroy",
    ),
    *_req(
        "FileJournal",
        "code",
        "_FileJournal__journalFile _FileJournal__journal _FileJournal__currentOffset",
    ),
    *_req("ResizableFile", "code", "_ResizableFile__f"),
    *_req(
        "pysyncobj.journal", "attr", "ResizableFile FIRST_RECORD_OFFSET LAST_RECORD_OFFSET_OFFSET"
    ),
    *_req("Serializer", "attr", "serialize checkSerializing getTransmissionData"),
    *_req(
        "SyncObj",
        "attr",
        "_onTick doTick forceLogCompaction _applyCommand transferLeadership "
        "_SyncObj__onMessageReceived "
        "_SyncObj__sendNextNodeIdx _SyncObj__getCurrentLogIndex _SyncObj__getCurrentLogTerm "
        "_SyncObj__getEntries _SyncObj__connectedToAnyone _SyncObj__generateRaftTimeout "
        "_SyncObj__setCurrentTerm _SyncObj__setState _SyncObj__doApplyCommand",
    ),
    *_req(
        "SyncObj",
        "code",
        "_SyncObj__recvTransmission _SyncObj__otherNodes _SyncObj__selfNode "
        "_SyncObj__raftElectionDeadline _SyncObj__transferInProgress _SyncObj__raftState "
        "_SyncObj__raftCurrentTerm _SyncObj__transport _SyncObj__raftNextIndex "
        "_SyncObj__raftCommitIndex _SyncObj__raftLeader _SyncObj__raftMatchIndex "
        "_SyncObj__lastResponseTime _SyncObj__newAppendEntriesTime _SyncObj__raftLog",
    ),
    *_req("TCPTransport", "attr", "send _shouldConnect ready"),
    *_req("TCPTransport", "code", "_preventConnectNodes _connections _syncObj"),
)


def _code_names(cls: type) -> set[str]:
    """Every name the functions of ``cls`` use (including nested code objects)."""
    names: set[str] = set()
    stack = [v.__code__ for v in vars(cls).values() if isinstance(v, types.FunctionType)]
    while stack:
        code = stack.pop()
        names.update(code.co_names)
        stack.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
    return names


def missing_names(
    version: str, owners: Mapping[str, Any], requirements: Iterable[Requirement] = REQUIREMENTS
) -> list[str]:
    """What is wrong with the installed PySyncObj, one line per problem (empty: compatible)."""
    problems = []
    if version != REQUIRED_VERSION:
        problems.append(f"version is {version}, the patches need exactly {REQUIRED_VERSION}")
    for r in requirements:
        owner = owners.get(r.owner)
        if owner is None:
            problems.append(f"{r.owner} is missing")
        elif r.kind == "code" and r.name not in _code_names(owner):
            problems.append(f"{r.owner} no longer uses {r.name}")
        elif r.kind == "attr" and not hasattr(owner, r.name):
            problems.append(f"{r.owner}.{r.name} is missing")
    return problems


def ensure_compatible(version: str, owners: Mapping[str, Any]) -> None:
    problems = missing_names(version, owners)
    if problems:
        raise PySyncObjIncompatible(
            "kvnode.raft.compat: installed PySyncObj does not match the code its patches "
            "override: " + "; ".join(problems)
        )


INSTALLED: Mapping[str, Any] = {
    "pysyncobj.syncobj": pso_syncobj,
    "pysyncobj.journal": pso_journal,
    "pysyncobj.poller": pso_poller,
    "pysyncobj.tcp_connection": pso_tcp_connection,
    "pysyncobj.config": pso_config,
    "pysyncobj.pickle": pso_pickle,
    "pysyncobj.serializer": pso_serializer,
    "pysyncobj.monotonic": pso_monotonic,
    "FileJournal": getattr(pso_journal, "FileJournal", None),
    "ResizableFile": getattr(pso_journal, "ResizableFile", None),
    "Serializer": getattr(pso_serializer, "Serializer", None),
    "SyncObj": SyncObj,
    "TCPTransport": getattr(pso_transport, "TCPTransport", None),
    "TcpConnection": getattr(pso_tcp_connection, "TcpConnection", None),
}
ensure_compatible(pso_version.VERSION, INSTALLED)
if (pso_journal.FIRST_RECORD_OFFSET, pso_journal.LAST_RECORD_OFFSET_OFFSET) != (
    wal_mod.FIRST_RECORD_OFFSET,
    wal_mod.LAST_RECORD_OFFSET_OFFSET,
):
    raise PySyncObjIncompatible("kvnode.raft.wal: PySyncObj's journal file layout changed")

_RAFT_STATE = pso_syncobj._RAFT_STATE
Poller = pso_poller.Poller  # for the ticker's facade poller
POLL_EVENT_TYPE = pso_poller.POLL_EVENT_TYPE
# PySyncObj's clock (CLOCK_MONOTONIC_RAW, not time.monotonic): its deadlines are on this one.
_clock = pso_monotonic.monotonic
SERIALIZER_STATE = pso_config.SERIALIZER_STATE

# -- createPoller: the shared ticker's facade ------------------------------------------------
_construction = threading.local()
_original_create_poller = pso_syncobj.createPoller


def _create_poller(poller_type: str) -> Any:
    facade = getattr(_construction, "facade", None)
    return facade if facade is not None else _original_create_poller(poller_type)


pso_syncobj.createPoller = _create_poller


@contextlib.contextmanager
def facade_poller(facade: Any) -> Iterator[None]:
    """SyncObjs constructed in this block (this thread) use ``facade`` as their poller."""
    _construction.facade = facade
    try:
        yield
    finally:
        _construction.facade = None


# -- getEncryptor: one key derivation per password, not per group; failures reported ----------
_original_get_encryptor = pso_syncobj.getEncryptor
_BAD_MESSAGE_REPORT_EVERY_S = 30.0
_bad_message_reported_at: float | None = None


def _report_bad_message() -> None:
    """PySyncObj drops a connection whose message fails to authenticate without a word
    ("Why no logging of security errors?" in its source), so a node with the wrong Raft
    password would just never join. Say it, at most every 30 s (no message content)."""
    global _bad_message_reported_at
    now = time.monotonic()
    if _bad_message_reported_at is None or now - _bad_message_reported_at >= (
        _BAD_MESSAGE_REPORT_EVERY_S
    ):
        _bad_message_reported_at = now
        log.error(
            "a Raft message failed authentication and its connection was dropped: a peer "
            "with another KVNODE_RAFT_PASSWORD_FILE (or none), or not a ringkv node"
        )


class ReportingEncryptor:
    """A ``Fernet`` that logs (rate-limited) when a message does not authenticate, then
    raises as before; PySyncObj uses exactly these three methods."""

    __slots__ = ("_fernet",)

    def __init__(self, fernet: Any) -> None:
        self._fernet = fernet

    def encrypt_at_time(self, data: bytes, current_time: int) -> bytes:
        return self._fernet.encrypt_at_time(data, current_time)  # type: ignore[no-any-return]

    def extract_timestamp(self, token: bytes) -> int:
        try:
            return self._fernet.extract_timestamp(token)  # type: ignore[no-any-return]
        except Exception:
            _report_bad_message()
            raise

    def decrypt(self, token: bytes) -> bytes:
        try:
            return self._fernet.decrypt(token)  # type: ignore[no-any-return]
        except Exception:
            _report_bad_message()
            raise


@functools.lru_cache(maxsize=4)
def _get_encryptor(password: str | bytes) -> ReportingEncryptor:
    """PySyncObj derives the Fernet key from the password (PBKDF2, 100 000 rounds: ~20 ms) in
    every SyncObj's constructor, which runs on the shared ticker thread; with hundreds of groups
    that stalled every group's ticks for seconds. A ``Fernet`` holds only its keys and is safe
    to share between groups (each message draws its own IV)."""
    return ReportingEncryptor(_original_get_encryptor(password))


pso_syncobj.getEncryptor = _get_encryptor


# -- createJournal: quiet meta file; durable journal for durability=fsync ----------------------
class SyncedJournalPath(str):
    """A journal file name that asks for the synced journal; ``wal`` is the node's WAL
    (``kvnode.raft.wal``), or None for a journal that syncs its own file per entry."""

    wal: Any = None

    @classmethod
    def of(cls, path: str, wal: Any = None) -> SyncedJournalPath:
        synced = cls(path)
        synced.wal = wal
        return synced


class QuietFileJournal(pso_journal.FileJournal):  # type: ignore[misc]
    """FileJournal that rewrites its meta file only when the commit index changed.

    PySyncObj sets the commit index on every append-entries a follower receives, heartbeats
    included, which marks the meta file dirty, and its one-second timer then rewrites it (write
    a temporary file, rename): every idle follower replica wrote and renamed a file every second
    (in a py-spy of an idle node with 256 partitions, 23 % of all samples, most of the ticker
    thread's). The stored value is the same either way.
    """

    def setRaftCommitIndex(self, raftCommitIndex: int) -> None:
        if raftCommitIndex != self.getRaftCommitIndex():
            super().setRaftCommitIndex(raftCommitIndex)


class SyncedFileJournal(QuietFileJournal):
    """FileJournal whose appended entries and term/vote record are on disk before PySyncObj's
    messages about them leave the node: a follower answers append-entries, a leader counts
    itself and a client hears of its write only for synced entries.

    With the node's WAL (the normal case, ``kvnode.raft.wal``) every change is a WAL record and
    the ticker syncs the WAL once per loop, holding that loop's Raft messages until then; the
    file itself is synced when it opens and when the WAL starts a segment. Without one (a
    replica built outside a ``GroupManager``), each change syncs the file.
    """

    def __init__(self, journal_file: str) -> None:
        super().__init__(str(journal_file))
        self._path = str(journal_file)
        self._meta_path = self._path + ".meta"
        self.wal = getattr(journal_file, "wal", None)
        self._name = self.wal.name(self._path) if self.wal is not None else ""
        if self.wal is not None:
            self.wal.register(self._name, self)
            self.wal.base(self._name, self.checkpoint())

    def flush(self) -> None:
        """``fdatasync`` of the journal file instead of PySyncObj's ``mmap.flush``: CPython's
        ``msync`` holds the GIL for the whole disk flush, stalling the node's event loop and
        every other group; ``fdatasync`` releases it. On Linux both write back the same pages
        (the mapping is ``MAP_SHARED`` over the page cache; ``msync`` with ``MS_SYNC`` is
        ``vfs_fsync_range`` with ``datasync`` set)."""
        resizable = self._FileJournal__journalFile
        os.fdatasync(resizable._ResizableFile__f.fileno())

    def checkpoint(self) -> Any:
        """Sync the file; its base (``kvnode.raft.wal.Base``)."""
        self.flush()
        return wal_mod.Base.of(self._FileJournal__journal, self._FileJournal__currentOffset)

    def add(self, command: Any, idx: int, term: int) -> None:
        super().add(command, idx, term)
        if self.wal is not None:
            self.wal.add(self._name, command, idx, term)
        else:
            self.flush()

    def deleteEntriesFrom(self, entryFrom: int) -> None:
        super().deleteEntriesFrom(entryFrom)
        if self.wal is not None:
            self.wal.trunc(self._name, entryFrom)
        else:
            self.flush()

    def deleteEntriesTo(self, entryTo: int) -> None:
        # PySyncObj rewrites the file in place (clear, then re-add what is kept): write the
        # kept entries to a new file instead, synced and renamed over the old one, so a crash
        # leaves the old or the new journal, never a torn one (kvnode.raft.wal relies on it).
        self._replace(self._FileJournal__journal[entryTo:])

    def clear(self) -> None:
        self._replace([])

    _FileJournal__journalFile: Any  # PySyncObj's private state we assign (for mypy)

    def _replace(self, entries: list[Any]) -> None:
        identity = self._FileJournal__journalFile.read(0, wal_mod.IDENTITY_SIZE)
        end = wal_mod.prepare_journal(self._path, identity, entries)
        if self.wal is not None:  # the new content's base on disk before the rename
            self.wal.base(self._name, wal_mod.Base.of(entries, end))
            self.wal.sync()
        self._FileJournal__journalFile._destroy()
        wal_mod.install_journal(self._path)
        self._FileJournal__journalFile = pso_journal.ResizableFile(self._path)
        self._FileJournal__journal = list(entries)
        self._FileJournal__currentOffset = end

    def _destroy(self) -> None:
        super()._destroy()  # msync, close
        if self.wal is not None:
            self.wal.forget(self._name)

    def setCurrentTerm(self, term: int, votedForNodeId: Any) -> None:
        # PySyncObj writes <journal>.meta.tmp and renames it over <journal>.meta, syncing
        # neither: sync the new file, then the directory, so the rename (the vote) is durable.
        super().setCurrentTerm(term, votedForNodeId)
        _fsync_path(self._meta_path)
        _fsync_path(os.path.dirname(os.path.abspath(self._meta_path)))


# -- Raft message frames: zlib streams without compression --------------------------------
class RaftFrames:
    """What ``pysyncobj.tcp_connection`` calls ``zlib``: it compresses every pickled message
    (``zlib.compress(data, 3)``) and decompresses every one received.

    ``compress`` writes a zlib stream of stored blocks with the smallest window and state: about
    1 us per message instead of the 50-100 us that setting up a default deflate state costs,
    whatever the message's size (measured with 60-byte and 1.2 KiB messages). Raft peers are
    pods of one cluster: the CPU of the one ticker thread that serves every group of the node
    is what limits it, not the bytes; 1 KiB of random text was only 23 % smaller compressed.
    ``decompress`` is zlib's, so messages of older releases (compressed) decode as before, and
    theirs decode ours: a rolling upgrade mixes both."""

    @staticmethod
    def compress(data: bytes, level: int = -1) -> bytes:
        del level  # PySyncObj asks for 3; no compression is what the node wants
        framer = zlib.compressobj(0, zlib.DEFLATED, 9, 1)
        return framer.compress(data) + framer.flush()

    decompress = staticmethod(zlib.decompress)


pso_tcp_connection.zlib = RaftFrames


# -- connections of quiesced groups: silence is not death --------------------------------
_TcpConnection = pso_tcp_connection.TcpConnection
_original_connection_timeout = _TcpConnection._TcpConnection__processConnectionTimeout


def _connection_timeout_unless_quiesced(self: Any) -> None:
    """PySyncObj closes a connection on which nothing was read for ``connectionTimeout``,
    checked at the connection's next event or send. A quiesced group's connections carry
    nothing (beacons use one connection per node pair), so the first message after a quiet
    spell, a ReadIndex probe or its answer, closed the connection it travelled on and was lost;
    and no quiesced group reconnects (only an awake group's tick does), so every later read of
    that partition failed too. While the group is quiesced the beacons are its liveness (a
    member's node falling silent wakes it); once awake, ``CompatSyncObj.wake`` restarts each
    connection's clock and PySyncObj's own rule applies again."""
    owner = getattr(self._TcpConnection__poller, "owner", None)
    if owner is not None and getattr(owner, "quiesced", False):
        return
    _original_connection_timeout(self)


_TcpConnection._TcpConnection__processConnectionTimeout = _connection_timeout_unless_quiesced


# -- Raft messages held until the node's WAL is synced --------------------------------------
_original_transport_send = pso_transport.TCPTransport.send
_CONNECTED = pso_tcp_connection.CONNECTION_STATE.CONNECTED


def _send_or_hold(self: Any, node: Any, message: Any) -> bool:
    """``TCPTransport.send`` that first offers the message to the group's poller's
    ``hold_send`` (the ticker's facade poller in ``durability=fsync``, ``kvnode.raft.ticker``),
    which keeps it until the loop's WAL sync."""
    hold = getattr(self._syncObj._poller, "hold_send", None)
    conn = self._connections.get(node)
    if hold is not None and conn is not None and conn.state == _CONNECTED and hold(conn, message):
        return True
    return bool(_original_transport_send(self, node, message))


pso_transport.TCPTransport.send = _send_or_hold


def send_held(conn: Any, message: Any) -> None:
    """Send a message ``hold_send`` kept; dropped if its connection closed meanwhile (Raft
    resends what matters, as after any lost message)."""
    if conn.state == _CONNECTED:
        conn.send(message)


# -- atomicReplace: a received snapshot is durable before it replaces the old one -----------
_original_atomic_replace = pso_serializer.atomicReplace


def _durable_replace(old: str, new: str) -> Any:
    """PySyncObj renames a snapshot received from the leader into place without syncing it, then
    drops the journal it covers; stores are rebuilt from that file after a host crash
    (``kvnode.storage.unsynced``), so sync the file before the rename and the directory after.
    A missing source (our own dumps are installed by ``raft.dump``) raises as before."""
    with contextlib.suppress(FileNotFoundError):
        files.fsync_path(old)
    result = _original_atomic_replace(old, new)
    _fsync_path(os.path.dirname(os.path.abspath(new)))
    return result


pso_serializer.atomicReplace = _durable_replace


def _fsync_path(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        files.fsync_path(path)


_original_create_journal = pso_syncobj.createJournal


def _create_journal(journalFile: Any = None) -> Any:
    if isinstance(journalFile, SyncedJournalPath):
        return SyncedFileJournal(journalFile)
    if journalFile is None:
        return _original_create_journal(journalFile)
    return QuietFileJournal(journalFile)


pso_syncobj.createJournal = _create_journal


# -- the replica base class ------------------------------------------------------------------
class CompatSyncObj(SyncObj):  # type: ignore[misc]
    """SyncObj with Raft §5.3 append-entries and pre-vote. PySyncObj calls the name-mangled
    methods through ``self``, so overriding them here changes its behaviour without copying its
    handlers."""

    _SyncObj__raftElectionDeadline: float  # PySyncObj's private state we assign (for mypy)
    _SyncObj__recvTransmission: Any

    def __init__(self, self_addr: str, peers: list[str], conf: Any) -> None:
        self._ack_limit: int | None = None
        self._leader_contact_at = float("-inf")  # last append-entries from a current leader
        self._lower_term_leader_at = float("-inf")  # last one from a leader behind our term
        self._prevote_round: prevote.Round | None = None
        self._prevote_won_at_term: int | None = None
        self.prevote_rounds = 0  # rounds started (observability and tests)
        self.terms_adopted_from_prevote = 0  # refusals that carried a higher term (ditto)
        self.read_index = readindex.ReadIndexer(self, resend_s=conf.appendEntriesPeriod)
        self.follower_reads = followerread.FollowerReads(self)
        self._leader_features_asked_at = float("-inf")
        # peer -> (when it last answered FEATURES_ASK, what it listed)
        self._peer_features: dict[str, tuple[float, frozenset[str]]] = {}
        self._features_asked_at = float("-inf")
        self.group_commit_wanted_at = float("-inf")  # set by the event loop when it batches
        self.group_commit_ok = False  # every peer decodes grouped entries (ticker writes it)
        # Quiescing (kvnode.raft.quiesce; driven by kvnode.raft.quiescer, ticker thread).
        self.quiescer: Any = None  # the node's Quiescer; None: this group never quiesces
        self.quiesced = False
        self.quiesce_leader: str | None = None  # a quiesced follower's leader node (key)
        self.quiet_at: tuple[int, int] = (-1, -1)  # (term, last index) when it quiesced
        self.quiesce_ok = False  # every peer understands quiescing (ticker writes it)
        self.quiesce_wanted_at = float("-inf")  # set by the quiescer while the leader idles
        self._activity: tuple[int, int] = (-1, -1)  # (last log index, commit index) last seen
        self._active_at = _clock()  # when it last moved
        self._proposals = 0  # _applyCommand calls (any thread)
        self._proposals_seen = 0  # ... as of the last tick
        self._wal: Any = None  # the node's WAL (durability=fsync), synced before any apply
        super().__init__(self_addr, peers, conf)
        self._wal = getattr(self._SyncObj__raftLog, "wal", None)

    # -- durability=fsync: nothing is applied before it is on disk --------------------------
    def _SyncObj__doApplyCommand(self, command: Any) -> Any:
        # With more than one voter an entry commits only after a follower acknowledged it, and
        # the leader sent it only after the WAL sync that covered it. A lone voter needs no
        # answer: PySyncObj 0.3.17 commits in the tick after the one that appended (after the
        # loop's sync), and this keeps the rule true without relying on that order.
        if self._wal is not None:
            self._wal.sync()
        return SyncObj._SyncObj__doApplyCommand(self, command)

    # -- ticks: pre-vote gate in front of PySyncObj's election timer ------------------------
    def _onTick(self, timeToWait: float = 0.0) -> None:
        if self.quiesced and not self._wake_if_needed():
            now = time.monotonic()
            self.read_index.on_tick(now)  # ReadIndex works without heartbeats
            self.follower_reads.on_tick(now)
            return
        self._proposals_seen = self._proposals
        self._prevote_gate()
        SyncObj._onTick(self, timeToWait)
        now = time.monotonic()
        self.read_index.on_tick(now)
        self.follower_reads.on_tick(now)
        self._feature_handshake(now)
        activity = (int(self._SyncObj__getCurrentLogIndex()), int(self._SyncObj__raftCommitIndex))
        if activity != self._activity:
            self._activity = activity
            self._active_at = _clock()

    def _applyCommand(self, command: Any, callback: Any, commandType: Any = None) -> None:
        self._proposals += 1  # seen by a quiesced group's next tick (the pipe notifier wakes it)
        SyncObj._applyCommand(self, command, callback, commandType)

    def transferLeadership(self, node: Any = None, callback: Any = None) -> None:
        self.wake("transfer")
        SyncObj.transferLeadership(self, node, callback)

    # -- quiescing (kvnode.raft.quiesce) -----------------------------------------------------
    def _wake_if_needed(self) -> bool:
        """A quiesced group's tick: wake (and return True) on a proposal or a role change. (A
        follower whose leader's node fell silent is woken by the quiescer's round.)"""
        leading = self._SyncObj__raftState == _RAFT_STATE.LEADER
        if self._proposals != self._proposals_seen:
            self.wake("proposal")
        elif leading != (self.quiesce_leader is None):
            self.wake("role changed")
        return not self.quiesced

    def quiesce_busy(self) -> bool:
        """Work that needs ticks: proposals not yet in the log, a transfer, pending reads."""
        return (
            self._proposals != self._proposals_seen
            or bool(self._SyncObj__transferInProgress)
            or bool(self.read_index.pending)
            or bool(self.follower_reads.pending)
        )

    def quiesce_leader_view(self, key_of: Any) -> quiesce.LeaderView | None:
        """None unless this replica is an awake leader."""
        if self.quiesced or self._SyncObj__raftState != _RAFT_STATE.LEADER:
            return None
        match = self._SyncObj__raftMatchIndex
        return quiesce.LeaderView(
            term=int(self._SyncObj__raftCurrentTerm),
            last_index=int(self._SyncObj__getCurrentLogIndex()),
            commit_index=int(self._SyncObj__raftCommitIndex),
            last_applied=int(self.raftLastApplied),
            match_indexes={key_of(str(n.id)): int(match.get(n, 0)) for n in self.other_nodes()},
            idle_for=_clock() - self._active_at,
            busy=self.quiesce_busy(),
            peers_support=self.quiesce_ok,
        )

    def quiesce_follower_view(self, key_of: Any) -> quiesce.FollowerView | None:
        """None for a leader or a replica without a node (a removed member)."""
        if self._SyncObj__selfNode is None or self._SyncObj__raftState == _RAFT_STATE.LEADER:
            return None
        leader = self._SyncObj__raftLeader
        return quiesce.FollowerView(
            term=int(self._SyncObj__raftCurrentTerm),
            leader_node=None if leader is None else key_of(str(leader.id)),
            last_index=int(self._SyncObj__getCurrentLogIndex()),
            commit_index=int(self._SyncObj__raftCommitIndex),
            last_applied=int(self.raftLastApplied),
            busy=self.quiesce_busy(),
        )

    def quiet_position(self) -> tuple[int, int]:
        """(term, last log index): what a beacon announces for a quiesced leader."""
        return int(self._SyncObj__raftCurrentTerm), int(self._SyncObj__getCurrentLogIndex())

    def quiesce(self, leader: str | None) -> None:
        """Stop heartbeats (``leader`` None: this replica leads) or the election timer (a
        follower of ``leader``'s node, kept asleep by its beacons)."""
        self.quiesced = True
        self.quiesce_leader = leader
        self.quiet_at = self.quiet_position()  # nothing changes it without waking the group

    def leader_contact_at(self) -> float:
        """When a leader last spoke to this replica; while quiesced, the last beacon from the
        leader's node (which listed this group at this state) counts."""
        contact = self._leader_contact_at
        if self.quiesced and self.quiesce_leader is not None and self.quiescer is not None:
            contact = max(contact, self.quiescer.heard_at_key(self.quiesce_leader))
        return contact

    def wake(self, reason: str) -> None:
        """Back to normal Raft. A follower's election deadline runs from its leader's last
        beacon, as if that had been a heartbeat. A leader heartbeats at once and counts each
        follower as heard when its node's last beacon was (no answers came while it slept)."""
        if not self.quiesced:
            return
        contact = self.leader_contact_at()
        self.quiesced = False
        self.quiesce_leader = None
        self._active_at = _clock()
        # The quiet time is not silence of a dead peer (beacons vouched for the members): each
        # connection's read-timeout clock starts now (_connection_timeout_unless_quiesced).
        for conn in list(self._SyncObj__transport._connections.values()):
            conn._TcpConnection__lastReadTime = pso_monotonic.monotonic()
        if self._SyncObj__raftState != _RAFT_STATE.LEADER:
            if contact > self._leader_contact_at:
                self._leader_contact_at = contact
                deadline = contact + self._SyncObj__generateRaftTimeout()
                if deadline > self._SyncObj__raftElectionDeadline:
                    self._SyncObj__raftElectionDeadline = deadline
        else:
            self._SyncObj__newAppendEntriesTime = 0
            responded = self._SyncObj__lastResponseTime
            for node in self.other_nodes():
                heard = self.quiescer.heard_at(self, node) if self.quiescer else float("-inf")
                if heard > responded.get(node, float("-inf")):
                    responded[node] = heard
        if self.quiescer is not None:
            self.quiescer.woke(self, reason)

    def _in_flight_at_quiescence(self, node: Any, message: dict[str, Any]) -> bool:
        """A heartbeat the leader sent just before it quiesced, or a follower's success answer
        to one, arriving after: both describe exactly the quiesced state, and PySyncObj's
        handlers change nothing on them (a deadline, a response time). Waking on them made a
        group sleep and wake in a loop: quiesce, a straggler wakes it, it idles again."""
        term, index = self.quiet_at
        if message.get("type") == "append_entries":
            return (
                self.quiesce_leader is not None
                and node == self._SyncObj__raftLeader
                and message.get("term") == term
                and not message.get("entries")
                and "transmission" not in message
                and message.get("prevLogIdx") == index
                and message.get("commit_index") == index
            )
        if message.get("type") == "next_node_idx":
            return (
                self.quiesce_leader is None
                and bool(message.get("success"))
                and message.get("next_node_idx") == index + 1
            )
        return False

    def send_beacon(self, node: Any, message: dict[str, Any]) -> bool:
        """Send a node-pair beacon over this group's connection; False: not connected."""
        return bool(self._SyncObj__transport.send(node, message))

    def other_nodes(self) -> list[Any]:
        return list(self._SyncObj__otherNodes)

    def _feature_handshake(self, now: float) -> None:
        """Keep ``group_commit_ok`` (``quiesce_ok``) true only while every current peer has
        confirmed, within ``_FEATURE_VALID_S``, that it decodes grouped entries (understands
        quiescing). Asks only while the event loop wants to group or the quiescer wants to
        quiesce (an idle group that cannot quiesce sends nothing)."""
        if self._SyncObj__selfNode is None or self._SyncObj__raftState != _RAFT_STATE.LEADER:
            self.group_commit_ok = self.quiesce_ok = False
            return
        others = [str(n.id) for n in self._SyncObj__otherNodes]
        answers = [self._peer_features.get(p, (float("-inf"), frozenset())) for p in others]
        valid = [features for at, features in answers if now - at < _FEATURE_VALID_S]
        complete = len(valid) == len(answers)
        self.group_commit_ok = complete and all(FEATURE_GROUP_COMMIT in f for f in valid)
        self.quiesce_ok = complete and all(FEATURE_QUIESCE in f for f in valid)
        renew = not all(now - at < _FEATURE_VALID_S / 2 for at, _ in answers)
        wanted = max(self.group_commit_wanted_at, self.quiesce_wanted_at)
        if (
            renew
            and now - wanted < _FEATURE_VALID_S
            and now - self._features_asked_at >= _FEATURE_ASK_EVERY_S
        ):
            self._features_asked_at = now
            for node in self._SyncObj__otherNodes:
                self._SyncObj__transport.send(node, {"type": FEATURES_ASK})

    def _prevote_gate(self) -> None:
        """When the election timer has fired, let PySyncObj campaign only after a won pre-vote
        round; otherwise start a round and re-arm the timer (no term change)."""
        now = _clock()
        if (
            self._SyncObj__selfNode is None
            or self._SyncObj__raftState == _RAFT_STATE.LEADER
            or self._SyncObj__raftElectionDeadline >= now
            or not self._SyncObj__transport.ready
            or not self._SyncObj__connectedToAnyone()
        ):
            return
        term = int(self._SyncObj__raftCurrentTerm)
        if self._SyncObj__transferInProgress:
            return  # TimeoutNow from the leader: campaign now (thesis §3.10, §9.6)
        if self._prevote_won_at_term == term:
            self._prevote_won_at_term = None
            return  # a majority agreed there is no leader: campaign
        if now - self._lower_term_leader_at < self.conf.raftMaxTimeout:
            # A live leader is behind our term (we campaigned once and lost the race): it ignores
            # us and pre-votes cannot succeed under it, so a real election is the only way back.
            return
        others = list(self._SyncObj__otherNodes)
        if not others:
            return  # a one-voter group: its own vote is the majority
        # No append-entries for an election timeout: stop naming a leader (PySyncObj clears it
        # when it campaigns, which pre-vote now defers). Otherwise /readyz, the status and the
        # operator's QuorumLost check kept reporting a dead leader for as long as no pre-vote
        # was won; an append-entries from a live leader sets it again.
        self._SyncObj__raftLeader = None
        self._prevote_round = prevote.Round.start(
            current_term=term, self_id=str(self._SyncObj__selfNode.id), voters=len(others) + 1
        )
        self._SyncObj__raftElectionDeadline = now + self._SyncObj__generateRaftTimeout()
        self.prevote_rounds += 1
        message = {
            "type": "pre_vote",
            "term": term + 1,
            "last_log_index": self._SyncObj__getCurrentLogIndex(),
            "last_log_term": self._SyncObj__getCurrentLogTerm(),
        }
        for node in others:
            self._SyncObj__transport.send(node, message)

    def _answer_prevote(self, node: Any, message: dict[str, Any]) -> None:
        granted = self._SyncObj__selfNode is not None and prevote.grant(
            prospective_term=int(message["term"]),
            candidate_log=prevote.LogPosition(
                int(message["last_log_index"]), int(message["last_log_term"])
            ),
            my_term=int(self._SyncObj__raftCurrentTerm),
            my_log=prevote.LogPosition(
                int(self._SyncObj__getCurrentLogIndex()), int(self._SyncObj__getCurrentLogTerm())
            ),
            i_am_leader=self._SyncObj__raftState == _RAFT_STATE.LEADER,
            since_leader_contact_s=_clock() - self.leader_contact_at(),
            min_election_timeout_s=self.conf.raftMinTimeout,
        )
        answer = {
            "type": "pre_vote_response",
            "term": message["term"],
            "granted": granted,
            "current_term": int(self._SyncObj__raftCurrentTerm),  # see prevote.term_to_adopt
        }
        self._SyncObj__transport.send(node, answer)

    def _count_prevote(self, node: Any, message: dict[str, Any]) -> None:
        responder_term = message.get("current_term")
        higher = prevote.term_to_adopt(
            granted=bool(message.get("granted")),
            responder_term=responder_term if isinstance(responder_term, int) else None,
            my_term=int(self._SyncObj__raftCurrentTerm),
            i_am_leader=self._SyncObj__raftState == _RAFT_STATE.LEADER,
        )
        if higher is not None:
            # What PySyncObj does on any message of a higher term (a vote request): follower at
            # that term, no vote cast, no leader known.
            self._prevote_round = None
            self._SyncObj__setCurrentTerm(higher, None)
            self._SyncObj__setState(_RAFT_STATE.FOLLOWER)
            self._SyncObj__raftLeader = None
            self.terms_adopted_from_prevote += 1
            return
        current = self._prevote_round
        if (
            current is None
            or not message.get("granted")
            or message.get("term") != current.term
            or current.term != self._SyncObj__raftCurrentTerm + 1
            or self._SyncObj__raftState == _RAFT_STATE.LEADER
        ):
            return
        current = current.with_grant(str(node.id))
        self._prevote_round = current
        if current.won:
            self._prevote_round = None
            self._prevote_won_at_term = current.term - 1
            self._SyncObj__raftElectionDeadline = 0  # campaign on this tick

    # -- messages ------------------------------------------------------------------------------
    def _SyncObj__onMessageReceived(self, node: Any, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if (
            self.quiesced
            and kind not in _ANSWERED_ASLEEP
            and not (kind == "pre_vote" and self.quiesce_leader is not None)
            and not self._in_flight_at_quiescence(node, message)
        ):
            # Beacons, ReadIndex probes and the feature handshake need no heartbeats, and a
            # quiesced follower answers pre-votes asleep (its leader's beacons are its leader
            # contact, so it refuses); anything else means the group is needed again.
            self.wake(f"message {kind}")
        if kind == "pre_vote":
            self._answer_prevote(node, message)
            return
        if kind == "pre_vote_response":
            self._count_prevote(node, message)
            return
        if kind == readindex.PROBE:
            answer = readindex.answer_probe(message, int(self._SyncObj__raftCurrentTerm))
            self._SyncObj__transport.send(node, answer)
            return
        if kind == readindex.ACK:
            self.read_index.on_ack(str(node.id), message)
            return
        if kind == followerread.ASK:
            self._answer_read_index_ask(node, message)
            return
        if kind == followerread.INDEX:
            self.follower_reads.on_index(str(node.id), message)
            return
        if kind == FEATURES_ASK:
            self._SyncObj__transport.send(
                node, {"type": FEATURES, "features": list(self.features())}
            )
            return
        if kind == FEATURES:
            listed = message.get("features", ())
            features = frozenset(f for f in listed if isinstance(f, str))
            self._peer_features[str(node.id)] = (time.monotonic(), features)
            return
        if kind == quiesce.BEACON:
            if self.quiescer is not None:
                self.quiescer.on_beacon(self, node, message)
            return
        if kind == "append_entries":
            if message.get("term", -1) >= self._SyncObj__raftCurrentTerm:
                self._leader_contact_at = _clock()
                self._prevote_round = None
                message = self._reconcile_append(message)
            elif _clock() - self._leader_contact_at > self.conf.raftMinTimeout:
                # not a straggler from before an election we already follow the winner of
                self._lower_term_leader_at = _clock()
        try:
            SyncObj._SyncObj__onMessageReceived(self, node, message)
        finally:
            self._ack_limit = None

    def _SyncObj__sendNextNodeIdx(
        self,
        node: Any,
        reset: bool = False,
        nextNodeIdx: int | None = None,
        success: bool = False,
    ) -> None:
        limit = self._ack_limit
        if limit is not None and success and not reset and nextNodeIdx is not None:
            nextNodeIdx = min(nextNodeIdx, limit)
        SyncObj._SyncObj__sendNextNodeIdx(
            self, node, reset=reset, nextNodeIdx=nextNodeIdx, success=success
        )

    def _reconcile_append(self, message: dict[str, Any]) -> dict[str, Any]:
        """Rewrite an append-entries so PySyncObj's handler follows Raft §5.3 (appendfix)."""
        if "prevLogIdx" not in message:
            # A snapshot transmission (or its placeholder while the leader prepares the dump) has
            # no log position to check, yet PySyncObj raises the commit index from it to
            # min(leader commit, own last index): a deposed leader healing from a partition then
            # commits and applies its own conflicting entries (seen: their writes acknowledged
            # and reads served from them, before the snapshot overwrote them). Only checked
            # append-entries may advance the commit index.
            own = int(self._SyncObj__raftCommitIndex)
            return {**message, "commit_index": min(int(message["commit_index"]), own)}
        if message.get("transmission") == "finish":
            # A single large entry sent in chunks: assemble it here so it goes through the same
            # rule as any other entry.
            raw = self._SyncObj__recvTransmission + message["data"]
            self._SyncObj__recvTransmission = ""
            message = {k: v for k, v in message.items() if k not in ("transmission", "data")}
            message["entries"] = [pso_pickle.loads(raw)]
        elif "transmission" in message:
            return message
        fixed = appendfix.reconcile(
            prev_idx=message["prevLogIdx"],
            prev_term=message["prevLogTerm"],
            entries=message.get("entries", []),
            commit_index=message["commit_index"],
            last_idx=self._SyncObj__getCurrentLogIndex(),
            term_at=self.term_at,
        )
        if fixed is None:
            return message
        self._ack_limit = fixed.ack_limit
        return {
            **message,
            "prevLogIdx": fixed.prev_idx,
            "prevLogTerm": fixed.prev_term,
            "entries": list(fixed.entries),
            "commit_index": fixed.commit_index,
        }

    def features(self) -> tuple[str, ...]:
        """What this replica tells a leader that asks (a test empties it to act as an older
        release, which does not answer at all)."""
        return (FEATURE_GROUP_COMMIT, FEATURE_QUIESCE, FEATURE_FOLLOWER_READ)

    # -- follower reads (kvnode.raft.followerread; ticker thread) ------------------------------
    def _answer_read_index_ask(self, node: Any, message: dict[str, Any]) -> None:
        """A follower's question for a read index: one more ReadIndex read of ours, answered
        with the commit index recorded now once a quorum round sent after now confirmed it."""
        now = time.monotonic()
        rid = message.get("id")
        commit = self.ri_commit_index()

        def done(outcome: readindex.Outcome) -> None:
            index = commit if outcome is readindex.Outcome.SERVE else None
            self._SyncObj__transport.send(node, followerread.answer(rid, index))

        deadline = followerread.leader_deadline(message, now)
        if self.read_index.begin(done, now=now, deadline=deadline) is readindex.Begin.FALLBACK:
            done(readindex.Outcome.DEPOSED)

    def fr_leader(self) -> str | None:
        """The leader a follower would ask (None: leading, no leader known, or removed)."""
        leader = self._SyncObj__raftLeader
        if (
            leader is None
            or self._SyncObj__selfNode is None
            or self._SyncObj__raftState == _RAFT_STATE.LEADER
            or leader not in self._SyncObj__otherNodes  # not a voter we know (membership change)
        ):
            return None
        return str(leader.id)

    def fr_leader_supports(self, leader: str, now: float) -> bool:
        """Whether ``leader`` answered, within ``_FEATURE_VALID_S``, that it answers read-index
        questions; asks it (at most every ``_FEATURE_ASK_EVERY_S``) when that is not known: an
        older release ignores both messages, and the read is forwarded meanwhile."""
        at, features = self._peer_features.get(leader, (float("-inf"), frozenset()))
        if now - at >= _FEATURE_VALID_S / 2 and (
            now - self._leader_features_asked_at >= _FEATURE_ASK_EVERY_S
        ):
            self._leader_features_asked_at = now
            self.ri_send(leader, {"type": FEATURES_ASK})
        return now - at < _FEATURE_VALID_S and FEATURE_FOLLOWER_READ in features

    # -- read access to private state (ticker thread) ------------------------------------------
    def term_at(self, idx: int) -> int | None:
        found = self._SyncObj__getEntries(idx, 1)
        return int(found[0][2]) if found else None

    def log_entries(self, from_idx: int, count: int) -> list[tuple[Any, int, int]]:
        """Journal entries ``(command, index, term)`` from ``from_idx`` (fewer if compacted)."""
        return list(self._SyncObj__getEntries(from_idx, count))

    def last_log_index(self) -> int:
        return int(self._SyncObj__getCurrentLogIndex())

    def cluster_nodes(self) -> set[Any]:
        """The voter Node objects, this replica included (what PySyncObj snapshots record)."""
        return set(self._SyncObj__otherNodes) | {self._SyncObj__selfNode}

    # -- what ReadIndex reads and sends (readindex.RaftView; ticker thread) --------------------
    def ri_is_leader(self) -> bool:
        return bool(self._SyncObj__raftState == _RAFT_STATE.LEADER)

    def ri_term(self) -> int:
        return int(self._SyncObj__raftCurrentTerm)

    def ri_commit_index(self) -> int:
        return int(self._SyncObj__raftCommitIndex)

    def ri_last_applied(self) -> int:
        return int(self.raftLastApplied)

    def ri_others(self) -> list[str]:
        return [str(n.id) for n in self._SyncObj__otherNodes]

    def ri_send(self, peer: str, message: dict[str, Any]) -> None:
        """Send a probe (leader) or a read-index question (follower). A quiesced group whose
        connection to ``peer`` is closed wakes: only an awake group reconnects, and the read
        is resent on a later tick."""
        sent = self._SyncObj__transport.send(self._node(peer), message)
        if not self.quiesced:
            return
        if not sent:
            self.wake("read unsent")
        elif self.quiescer is not None:
            self.quiescer.read_sent(self.partition)  # watched until answered (read_stalled)

    def reads_pending(self) -> bool:
        """ReadIndex reads or follower-read questions not answered yet."""
        return bool(self.read_index.pending) or bool(self.follower_reads.pending)

    # -- fault injection (integration tests; ticker thread) ------------------------------------
    def cut_link(self, addr: str) -> None:
        """Close the Raft connection to ``addr`` and never reconnect it (until ``heal_link``);
        both ends must cut it, since the end with the greater address initiates."""
        transport = self._SyncObj__transport
        node = self._node(addr)
        transport._preventConnectNodes.add(node)
        conn = transport._connections.get(node)
        if conn is not None:
            conn.disconnect()

    def heal_link(self, addr: str) -> None:
        self._SyncObj__transport._preventConnectNodes.discard(self._node(addr))

    def send_raw(self, addr: str, message: dict[str, Any]) -> None:
        """Send a Raft message as this replica, e.g. a delayed duplicate append-entries."""
        self._SyncObj__transport.send(self._node(addr), message)

    def _node(self, addr: str) -> Any:
        for node in self._SyncObj__otherNodes:
            if str(node.id) == addr:
                return node
        raise KeyError(f"{addr} is not a peer of {self._SyncObj__selfNode.id}")


def tcp_node(address: str) -> Any:
    """A PySyncObj peer object for ``host:port`` (what snapshots record as cluster members)."""
    return pso_node.TCPNode(address)
