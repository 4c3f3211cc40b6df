"""One partition replica: a thin PySyncObj state machine over a ``PartitionStore``.

The ``@replicated`` method only decodes the command and hands it to the stateless
``CommandProcessor`` with the entry's log index, which becomes the record version and the store's
applied index in the same atomic write — so a journal entry replayed after a restart is applied
exactly once (the processor skips ``index <= applied``).

Snapshots (PySyncObj log compaction and catch-up of far-behind followers) use the checksummed
format of ``kvnode.storage.snapshot``: a truncated or corrupt snapshot is rejected, never
installed. On restart, a snapshot older than the store's own applied index is not reloaded at all:
the store already holds that state, so restart cost is bounded by the journal tail, not the data.
Dumps are written by a worker thread (``kvnode.raft.dump``), never in the shared ticker. The
PySyncObj patches (append-entries rule, pre-vote) come from the base class
``compat.CompatSyncObj``.
"""

from __future__ import annotations

import logging
import pickle
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pysyncobj import SyncObjConf, replicated

from kvnode.core import errors
from kvnode.raft import commands, failstop
from kvnode.raft.compat import CompatSyncObj, tcp_node
from kvnode.raft.dump import BackgroundDump
from kvnode.raft.processor import CommandProcessor
from kvnode.storage import engine, snapshot
from kvnode.storage.engine import PartitionStore
from kvnode.watch.history import ChangeHistory, HistoryLimits

log = logging.getLogger(__name__)

_HEADER_VERSION = 1
_DIGESTS_KEPT = 16


@dataclass(frozen=True, slots=True)
class SeedCapture:
    """A consistent copy-to-be of this replica for a joining member: the snapshot header (the
    same format PySyncObj snapshots use, so the joiner installs it as its ``fullDumpFile``) and the
    store's items as of ``raft_index`` (a LevelDB snapshot, iterated later on any thread)."""

    header: bytes
    items: Iterator[tuple[bytes, bytes]]
    raft_index: int
    store_applied: int
    members: tuple[str, ...]


class DigestBook:
    """Digests computed in the background at the log index of each ``DigestCmd`` (thread-safe).

    A value of None means "still computing"; an index that is absent was never digested here.
    """

    def __init__(self, partition: int) -> None:
        self._partition = partition
        self._lock = threading.Lock()
        self._done: dict[int, str | None] = {}
        self._failed: set[int] = set()

    def start(self, index: int, items: Iterator[tuple[bytes, bytes]]) -> None:
        with self._lock:
            self._done[index] = None
            for old in sorted(self._done)[:-_DIGESTS_KEPT]:
                self._done.pop(old, None)
        threading.Thread(
            target=self._compute,
            args=(index, items),
            name=f"digest-p{self._partition}",
            daemon=True,
        ).start()

    def _compute(self, index: int, items: Iterator[tuple[bytes, bytes]]) -> None:
        try:
            value, count = engine.dump_digest(items)
        except Exception:
            log.exception("partition %d: digest at index %d failed", self._partition, index)
            with self._lock:
                self._done.pop(index, None)
                self._failed.add(index)
            return
        with self._lock:
            if index in self._done:
                self._done[index] = value
        log.info("partition %d: digest at index %d over %d records", self._partition, index, count)

    def lookup(self, index: int) -> tuple[bool, str | None]:
        """(known, digest): known=False when this replica has no digest for ``index``."""
        with self._lock:
            if index in self._done:
                return True, self._done[index]
            return False, None


class PartitionReplica(CompatSyncObj):
    """Replica of partition ``partition`` at Raft address ``self_addr``."""

    def __init__(
        self,
        *,
        partition: int,
        self_addr: str,
        peers: list[str],
        store: PartitionStore,
        processor: CommandProcessor,
        conf: SyncObjConf,
        history_limits: HistoryLimits | None = None,
    ) -> None:
        self.partition = partition
        self.label = f"p{partition}@{self_addr}"
        self._store = store
        self._processor = processor
        self.dumps = BackgroundDump(dump_path=conf.fullDumpFile, label=self.label)
        conf.serializer = self._serialize
        conf.deserializer = self._deserialize
        conf.serializeChecker = self.dumps.check
        self.digests = DigestBook(partition)
        # Complete from the store's applied index on: replayed entries below it are skipped.
        self.history = ChangeHistory(
            partition, limits=history_limits or HistoryLimits(), kept_after=store.applied_index()
        )
        super().__init__(self_addr, peers, conf)

    @property
    def store(self) -> PartitionStore:
        return self._store

    def quiesce_busy(self) -> bool:
        return super().quiesce_busy() or self.dumps.busy  # a dump completes in a tick

    @replicated  # type: ignore[untyped-decorator]
    def apply_command(self, payload: bytes) -> Any:
        """Apply one log entry. Runs in the ticker thread on every replica, in log order."""
        index = self.raftLastApplied + 1
        try:
            cmd = commands.decode(payload)
        except ValueError:
            # Deterministic on every replica: the same bytes fail the same way.
            log.error("partition %d: undecodable command at index %d", self.partition, index)
            return None
        try:
            result = self._processor.apply(self._store, cmd, index)
            if not result.skipped:
                ts_ms = _proposed_ms(cmd)
                self.history.record(index, result.effects, ts_ms=ts_ms)
            if isinstance(cmd, commands.DigestCmd) and not result.skipped:
                self.digests.start(index, self._store.iter_dump())
            return result
        except Exception:
            # A storage failure would make this replica diverge; fail-stop and let the restart
            # replay the journal instead of acknowledging something that was not written.
            failstop.fail_stop(log, "partition %d: apply failed at index %d", self.partition, index)

    # -- membership (ticker thread) -----------------------------------------------------------
    def member_addrs(self) -> tuple[str, ...]:
        """Raft addresses of the voters as this replica sees them (itself included)."""
        return tuple(sorted([str(self.selfNode.id), *(str(n.id) for n in self.otherNodes)]))

    def capture_seed(self) -> SeedCapture:
        """Take a seed for a joining member; ticker thread only (so the store and the Raft
        state are captured at the same applied index). Mirrors PySyncObj's log compaction:
        the joiner installs it as its snapshot, with the last two applied entries as its log."""
        applied = int(self.raftLastApplied)
        entries = self.log_entries(applied - 1, 2)
        if len(entries) < 2:
            raise errors.Unavailable(
                f"partition {self.partition}: log too short to seed from yet",
                partition=self.partition,
                retry_after=1,
            )
        cluster = self.cluster_nodes()
        raft_data = (entries[1], entries[0], cluster)  # what PySyncObj hands _serialize
        store_applied = self._store.applied_index()
        return SeedCapture(
            header=self._snapshot_header(raft_data),
            items=self._store.iter_dump(),
            raft_index=int(entries[1][1]),
            store_applied=store_applied,
            members=tuple(sorted(str(n.id) for n in cluster)),
        )

    def capture_backup(self) -> SeedCapture:
        """A seed for a backup; ticker thread only. Besides the seed, the same instant's store
        is digested in the background under the store's applied index (``digests``), so the
        taker can check the file it wrote against what this replica held (an independent
        reading of the same LevelDB state, not of the bytes it streamed)."""
        cap = self.capture_seed()
        self.digests.start(cap.store_applied, self._store.iter_dump())
        return cap

    # -- snapshots (called by PySyncObj in the ticker thread) ----------------------------------
    def _snapshot_header(self, raft_data: Any) -> bytes:
        return pickle.dumps(
            {
                "v": _HEADER_VERSION,
                "partition": self.partition,
                "store_applied": self._store.applied_index(),
                "raft": raft_data,
            },
            protocol=pickle.HIGHEST_PROTOCOL,
        )

    def _serialize(self, fname: str, raft_data: Any) -> None:
        """Capture the store (O(1) LevelDB snapshot) and the Raft position together, here in
        the ticker thread; the dump itself is written by a worker (``kvnode.raft.dump``)."""
        self.dumps.start(fname, self._snapshot_header(raft_data), self._store.iter_dump())

    def _deserialize(self, fname: str) -> Any:
        self.dumps.cancel()  # an older dump in flight must not replace what is installed now
        meta = pickle.loads(snapshot.read_header(fname))
        if meta.get("partition") != self.partition:
            raise ValueError(
                f"snapshot of partition {meta.get('partition')} offered to {self.partition}"
            )
        if self._store.applied_index() >= int(meta["store_applied"]):
            # The store already contains everything the snapshot does (restart case).
            log.info(
                "partition %d: store at %d is not behind snapshot at %d; not reloading data",
                self.partition,
                self._store.applied_index(),
                meta["store_applied"],
            )
            return meta["raft"]
        self._store.load_snapshot(fname)
        self.history.reset(self._store.applied_index())  # the changes in between are unknown
        log.info(
            "partition %d: installed snapshot at applied index %d",
            self.partition,
            self._store.applied_index(),
        )
        return meta["raft"]


def seed_header_info(header: bytes) -> tuple[int, int, list[str]]:
    """(partition, store_applied, member raft addresses) of a seed/snapshot header."""
    meta = pickle.loads(header)
    if not isinstance(meta, dict) or meta.get("v") != _HEADER_VERSION:
        raise ValueError("not a ringkv snapshot header")
    cluster = meta["raft"][2]
    return int(meta["partition"]), int(meta["store_applied"]), sorted(str(n.id) for n in cluster)


def restore_header(header: bytes, *, partition: int, peers: list[str]) -> bytes:
    """The header of a backup (a seed of another cluster) rewritten for a replica of a new
    cluster: the new voters ``peers`` and the same last two log positions with term 0.

    Why term 0: the new group starts with a fresh journal (current term 0). Keeping the old
    cluster's terms would put log entries of a higher term than any the new group has seen
    before its first election; with term 0 the restored log looks like one a fresh group
    compacted, every replica of the partition gets the identical header, and the first leader's
    no-op follows at term 1. The indexes are kept: the store's applied index and record
    versions continue from the backup, so versions stay monotonic across the restore.
    """
    meta = pickle.loads(header)
    if not isinstance(meta, dict) or meta.get("v") != _HEADER_VERSION:
        raise ValueError("not a ringkv snapshot header")
    if int(meta["partition"]) != partition:
        raise ValueError(f"backup of partition {meta['partition']} offered for {partition}")
    last, prev, _cluster = meta["raft"]
    raft = ((last[0], int(last[1]), 0), (prev[0], int(prev[1]), 0), {tcp_node(a) for a in peers})
    return pickle.dumps({**meta, "raft": raft}, protocol=pickle.HIGHEST_PROTOCOL)


def _proposed_ms(cmd: commands.Command) -> int:
    """When the leader proposed ``cmd`` (its clock; 0 if the command carries none): the watch
    lag metric measures from there. A group's newest request stands for the entry."""
    if isinstance(cmd, commands.WriteCmd | commands.ExpireCmd):
        return cmd.now_ms
    if isinstance(cmd, commands.GroupCmd):
        return max(req.now_ms for req in cmd.reqs)
    return 0
