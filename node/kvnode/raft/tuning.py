"""Raft configuration of every group of a node: ``RaftTuning`` and the PySyncObj config it makes.

The defaults live in one place, ``kvnode.settings.NodeSettings``: ``RaftTuning``'s field defaults
are read from it, and ``from_settings`` copies fields by name, so neither restates a value.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

from pysyncobj import SyncObjConf

from kvnode.raft.compat import SyncedJournalPath
from kvnode.settings import NodeSettings

_DEFAULTS: dict[str, Any] = {
    f.name: f.default
    for f in dataclasses.fields(NodeSettings)
    if f.default is not dataclasses.MISSING
}


@dataclass(frozen=True, slots=True)
class RaftTuning:
    """Timing and durability knobs shared by every group of the node (see NodeSettings)."""

    bind_host: str = _DEFAULTS["bind_host"]
    heartbeat_s: float = _DEFAULTS["heartbeat_s"]
    election_min_s: float = _DEFAULTS["election_min_s"]
    election_max_s: float = _DEFAULTS["election_max_s"]
    leader_fallback_s: float = _DEFAULTS["leader_fallback_s"]
    quiesce_idle_s: float = _DEFAULTS["quiesce_idle_s"]
    connection_retry_s: float = _DEFAULTS["connection_retry_s"]
    compaction_min_entries: int = _DEFAULTS["compaction_min_entries"]
    compaction_min_time_s: float = _DEFAULTS["compaction_min_time_s"]
    read_mode: str = _DEFAULTS["read_mode"]
    follower_reads: str = _DEFAULTS["follower_reads"]
    group_commit_max_requests: int = _DEFAULTS["group_commit_max_requests"]
    group_commit_max_inflight: int = _DEFAULTS["group_commit_max_inflight"]
    fsync: bool = _DEFAULTS["durability"] == "fsync"
    password: str | None = field(default=None, repr=False)
    """Raft traffic encryption (``KVNODE_RAFT_PASSWORD_FILE``'s content); never logged."""

    @classmethod
    def from_settings(cls, s: NodeSettings, *, password: str | None = None) -> RaftTuning:
        derived = ("fsync", "password")
        same = {
            f.name: getattr(s, f.name) for f in dataclasses.fields(cls) if f.name not in derived
        }
        return cls(**same, fsync=s.durability == "fsync", password=password)


def syncobj_conf(
    t: RaftTuning, *, partition_dir: str, self_addr: str, wal: Any = None
) -> SyncObjConf:
    """PySyncObj's configuration of one group (research/libraries.md §A1 for each choice);
    ``wal``: the node's WAL, which the synced journal of ``durability=fsync`` records into."""
    journal = os.path.join(partition_dir, "raft.journal")
    port = self_addr.rsplit(":", 1)[1]
    return SyncObjConf(
        autoTick=False,  # the node's SharedTicker drives every group
        appendEntriesUseBatch=False,  # otherwise ~100 ms per sequential write
        appendEntriesPeriod=t.heartbeat_s,
        appendEntriesBatchSizeBytes=1 << 20,  # no chunked path for values <= 256 KiB
        raftMinTimeout=t.election_min_s,
        raftMaxTimeout=t.election_max_s,
        connectionTimeout=max(3.5, t.election_max_s),
        connectionRetryTime=t.connection_retry_s,
        leaderFallbackTimeout=t.leader_fallback_s,
        commandsWaitLeader=False,  # fail fast (503) instead of queueing without a deadline
        journalFile=SyncedJournalPath.of(journal, wal) if t.fsync else journal,
        fullDumpFile=os.path.join(partition_dir, "raft.snapshot"),
        dynamicMembershipChange=True,
        logCompactionMinEntries=t.compaction_min_entries,
        logCompactionMinTime=t.compaction_min_time_s,
        logCompactionSplit=False,  # True confines compaction to a per-node slot of the
        # logCompactionMinTime period, postponing count-triggered compaction by up to that long
        dnsCacheTime=10.0,
        dnsFailCacheTime=2.0,
        bindAddress=f"{t.bind_host}:{port}",
        maxBindRetries=30,
        bindRetryTime=0.5,
        # Every message Fernet-encrypted and authenticated (AES-128-CBC + HMAC-SHA256, key from
        # PBKDF2 of the password) after a random-key exchange per connection; a peer with another
        # password fails to decrypt and is disconnected (kvnode.raft.compat caches the key).
        password=t.password,
    )
