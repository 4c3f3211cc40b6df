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
from pysyncobj import pickle as pso_pickle

from kvnode.raft import appendfix, commands
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
        self._ack_limit: int | None = None
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

    # -- Raft §5.3 append-entries rule (see kvnode.raft.appendfix) ----------------------------
    # PySyncObj calls these name-mangled methods through ``self``, so overriding them here
    # changes its behaviour without copying its handler.
    def _SyncObj__onMessageReceived(self, node: Any, message: dict[str, Any]) -> None:
        if (
            message.get("type") == "append_entries"
            and message.get("term", -1) >= self.raftCurrentTerm
        ):
            message = self._reconcile_append(message)
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
        if "prevLogIdx" not in message:
            return message
        if message.get("transmission") == "finish":
            # A single large entry sent in chunks: assemble it here so it goes through the same
            # rule as any other entry.
            raw = getattr(self, "_SyncObj__recvTransmission") + message["data"]  # noqa: B009
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
            term_at=self._term_at,
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

    def _term_at(self, idx: int) -> int | None:
        found = self._SyncObj__getEntries(idx, 1)
        return int(found[0][2]) if found else None

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
