"""One partition replica: a thin PySyncObj state machine over a ``PartitionStore``.

The ``@replicated`` method only decodes the command and hands it to the stateless
``CommandProcessor`` with the entry's log index, which becomes the record version and the store's
applied index in the same atomic write — so a journal entry replayed after a restart is applied
exactly once (the processor skips ``index <= applied``).

Snapshots (PySyncObj log compaction and catch-up of far-behind followers) use the checksummed
format of ``kvnode.storage.snapshot``: a truncated or corrupt snapshot is rejected, never
installed. On restart, a snapshot older than the store's own applied index is not reloaded at all:
the store already holds that state, so restart cost is bounded by the journal tail, not the data.
"""

from __future__ import annotations

import logging
import os
import pickle
from typing import Any

from pysyncobj import SyncObj, SyncObjConf, replicated

from kvnode.raft import commands
from kvnode.raft.processor import CommandProcessor
from kvnode.storage import snapshot
from kvnode.storage.engine import PartitionStore

log = logging.getLogger(__name__)

_HEADER_VERSION = 1


class PartitionReplica(SyncObj):  # type: ignore[misc]
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
    ) -> None:
        self.partition = partition
        self.label = f"p{partition}@{self_addr}"
        self._store = store
        self._processor = processor
        conf.serializer = self._serialize
        conf.deserializer = self._deserialize
        super().__init__(self_addr, peers, conf)

    @property
    def store(self) -> PartitionStore:
        return self._store

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
            return self._processor.apply(self._store, cmd, index)
        except Exception:
            # A storage failure would make this replica diverge; fail-stop and let the restart
            # replay the journal instead of acknowledging something that was not written.
            log.critical(
                "partition %d: apply failed at index %d; stopping the process",
                self.partition,
                index,
                exc_info=True,
            )
            logging.shutdown()
            os._exit(70)

    # -- snapshots (called by PySyncObj in the ticker thread) ----------------------------------
    def _serialize(self, fname: str, raft_data: Any) -> None:
        header = pickle.dumps(
            {
                "v": _HEADER_VERSION,
                "partition": self.partition,
                "store_applied": self._store.applied_index(),
                "raft": raft_data,
            },
            protocol=pickle.HIGHEST_PROTOCOL,
        )
        info = snapshot.write_snapshot(fname, header=header, items=self._store.iter_dump())
        log.info(
            "partition %d: snapshot written (%d items, %d bytes, applied %d)",
            self.partition,
            info.count,
            info.size_bytes,
            self._store.applied_index(),
        )

    def _deserialize(self, fname: str) -> Any:
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
        log.info(
            "partition %d: installed snapshot at applied index %d",
            self.partition,
            self._store.applied_index(),
        )
        return meta["raft"]
