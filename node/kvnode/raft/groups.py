"""All Raft groups of one node: open/close replicas, status, proposals and read barriers.

Every PySyncObj object is created, ticked and destroyed in the ``SharedTicker`` thread. The
asyncio side sees plain snapshots (``ReplicaStatus``, refreshed on every full tick) and awaits
proposals through ``bridge.submit``.

Strong reads use a read barrier: a ``BarrierCmd`` goes through the log and, once this replica has
applied it, everything committed before the read began is applied locally too (the barrier was
appended after those writes were committed — Leader Completeness), so a local read is
linearizable. Barriers are coalesced: at most one per group is in flight; reads arriving during
it wait for the next one, which starts when the current one ends (one log entry per round trip
however many reads).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pysyncobj import SyncObjConf

from kvnode.core import errors
from kvnode.raft import bridge, commands
from kvnode.raft.journal import SyncedJournalPath
from kvnode.raft.processor import CommandProcessor
from kvnode.raft.replica import PartitionReplica, SeedCapture
from kvnode.raft.ticker import SharedTicker
from kvnode.settings import NodeSettings
from kvnode.storage import snapshot
from kvnode.storage.engine import PartitionStore

log = logging.getLogger(__name__)

_ROLES = {0: "follower", 1: "candidate", 2: "leader"}
REPLICA_FILE = "replica.json"  # in a partition dir: this node hosts that replica (see registered)


@dataclass(frozen=True, slots=True)
class RaftTuning:
    """Timing and durability knobs shared by every group of the node (see NodeSettings)."""

    bind_host: str = "127.0.0.1"
    heartbeat_s: float = 0.15
    election_min_s: float = 1.0
    election_max_s: float = 2.0
    leader_fallback_s: float = 2.0
    connection_retry_s: float = 1.0
    compaction_min_entries: int = 20000
    compaction_min_time_s: float = 600.0
    fsync: bool = False

    @classmethod
    def from_settings(cls, s: NodeSettings) -> RaftTuning:
        return cls(
            bind_host=s.bind_host,
            heartbeat_s=s.heartbeat_s,
            election_min_s=s.election_min_s,
            election_max_s=s.election_max_s,
            leader_fallback_s=s.leader_fallback_s,
            connection_retry_s=s.connection_retry_s,
            compaction_min_entries=s.compaction_min_entries,
            compaction_min_time_s=s.compaction_min_time_s,
            fsync=s.durability == "fsync",
        )


@dataclass(frozen=True, slots=True)
class ReplicaStatus:
    """A point-in-time view of one local replica, safe to read from any thread."""

    partition: int
    self_addr: str
    role: str
    leader_addr: str | None
    term: int
    commit_index: int
    last_applied: int
    leader_commit_index: int | None
    store_applied: int
    members: tuple[str, ...]
    connected: tuple[str, ...]
    has_quorum: bool
    log_len: int
    updated_monotonic: float

    @property
    def lag(self) -> int:
        """Entries committed by the leader that this replica has not applied yet."""
        return max(0, (self.leader_commit_index or self.commit_index) - self.last_applied)

    def to_dict(self) -> dict[str, Any]:
        return {
            "partition": self.partition,
            "self": self.self_addr,
            "role": self.role,
            "leader": self.leader_addr,
            "term": self.term,
            "commit_index": self.commit_index,
            "last_applied": self.last_applied,
            "store_applied": self.store_applied,
            "lag": self.lag,
            "members": list(self.members),
            "connected": list(self.connected),
            "has_quorum": self.has_quorum,
            "log_len": self.log_len,
        }


class _Barrier:
    """Coalesces strong-read barriers of one group (only touched on the event loop)."""

    def __init__(self) -> None:
        self.inflight: asyncio.Future[None] | None = None
        self.next: asyncio.Future[None] | None = None


class GroupManager:
    """Owns the node's partition replicas."""

    def __init__(
        self,
        *,
        data_dir: str,
        tuning: RaftTuning,
        open_store: Callable[[str], PartitionStore],
        processor: CommandProcessor | None = None,
    ) -> None:
        self._data_dir = data_dir
        self._tuning = tuning
        self._open_store = open_store
        self._processor = processor or CommandProcessor()
        self.ticker = SharedTicker()
        self._replicas: dict[int, PartitionReplica] = {}
        self._status: dict[int, ReplicaStatus] = {}
        self._barriers: dict[int, _Barrier] = {}
        self._last_status_refresh = 0.0

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self.ticker.start()
        self.ticker.on_full_tick(self._refresh_status)

    def stop(self) -> None:
        self.ticker.call(self._destroy_all)
        self.ticker.stop()

    def _destroy_all(self) -> None:
        for partition in list(self._replicas):
            self._close_in_ticker(partition)

    # -- replicas ----------------------------------------------------------------------------
    def partition_dir(self, partition: int) -> str:
        return os.path.join(self._data_dir, f"p{partition:05d}")

    def open_replica(self, partition: int, *, self_addr: str, peers: list[str]) -> None:
        """Open (or reopen from disk) the local replica of ``partition``. Idempotent."""
        self.ticker.call(lambda: self._open_in_ticker(partition, self_addr, peers))

    def close_replica(self, partition: int) -> None:
        self.ticker.call(lambda: self._close_in_ticker(partition))

    def hosted(self) -> list[int]:
        return sorted(self._replicas)

    def hosts(self, partition: int) -> bool:
        return partition in self._replicas

    def store(self, partition: int) -> PartitionStore:
        return self._replica(partition).store

    def replica(self, partition: int) -> PartitionReplica:
        return self._replica(partition)

    def _replica(self, partition: int) -> PartitionReplica:
        try:
            return self._replicas[partition]
        except KeyError:
            raise errors.NotOwner(
                f"partition {partition} has no replica on this node", partition=partition
            ) from None

    def _open_in_ticker(self, partition: int, self_addr: str, peers: list[str]) -> None:
        if partition in self._replicas:
            return
        pdir = self.partition_dir(partition)
        os.makedirs(pdir, exist_ok=True)
        _write_registration(pdir, partition, self_addr, peers)
        store = self._open_store(os.path.join(pdir, "data"))
        conf = self._conf(pdir, self_addr)
        with self.ticker.constructing() as facade:
            replica = PartitionReplica(
                partition=partition,
                self_addr=self_addr,
                peers=[p for p in peers if p != self_addr],
                store=store,
                processor=self._processor,
                conf=conf,
            )
        self.ticker.add_group(replica, facade)
        self._replicas[partition] = replica
        self._barriers[partition] = _Barrier()
        log.info("partition %d: replica %s opened with peers %s", partition, self_addr, peers)

    def _close_in_ticker(self, partition: int) -> None:
        replica = self._replicas.pop(partition, None)
        if replica is None:
            return
        self.ticker.remove_group(replica)
        replica._doDestroy()
        replica.store.close()
        self._status.pop(partition, None)
        log.info("partition %d: replica closed", partition)

    # -- registry, seeding and dropping -----------------------------------------------------
    def registered(self) -> dict[int, tuple[str, list[str]]]:
        """Replicas this node hosted when it last ran: ``{partition: (self_addr, peers)}``.

        A replica is registered when first opened and unregistered only by ``drop_replica``,
        so a node restarts every replica it holds, including joining ones the map does not list
        yet (and removed ones not dropped yet, which then idle: their group refuses them).
        """
        out: dict[int, tuple[str, list[str]]] = {}
        if not os.path.isdir(self._data_dir):
            return out
        for name in sorted(os.listdir(self._data_dir)):
            path = os.path.join(self._data_dir, name, REPLICA_FILE)
            if not (name.startswith("p") and name[1:].isdigit() and os.path.isfile(path)):
                continue
            try:
                with open(path, encoding="utf-8") as f:
                    reg = json.load(f)
                out[int(reg["partition"])] = (str(reg["self_addr"]), [str(x) for x in reg["peers"]])
            except (OSError, ValueError, KeyError, TypeError):
                log.error("ignoring unreadable replica registration %s", path, exc_info=True)
        return out

    def seed_path(self, partition: int) -> str:
        """Where a joining replica's incoming seed stream is written before it is verified."""
        return os.path.join(self.partition_dir(partition), "raft.snapshot.seed")

    def install_seed(self, partition: int) -> bytes:
        """Load the verified seed at ``seed_path`` into the (not yet hosted) replica's store and
        make it the replica's Raft snapshot; returns its header. Blocking: call in a worker."""
        if partition in self._replicas:
            raise errors.PreconditionFailed(f"partition {partition} is already hosted here")
        pdir = self.partition_dir(partition)
        seed = self.seed_path(partition)
        for name in os.listdir(pdir):  # leftovers of an earlier replica or an interrupted join
            if name.startswith("raft.") and name != os.path.basename(seed):
                os.remove(os.path.join(pdir, name))
        store = self._open_store(os.path.join(pdir, "data"))
        try:
            header = store.load_snapshot(seed)
        finally:
            store.close()
        os.replace(seed, os.path.join(pdir, "raft.snapshot"))
        snapshot.fsync_dir(pdir)
        return header

    def capture_seed(self, partition: int) -> SeedCapture:
        replica = self._replica(partition)
        return self.ticker.call(replica.capture_seed)

    def drop_replica(self, partition: int) -> bool:
        """Close the replica (if open) and delete its directory. Blocking. False: none here."""
        pdir = self.partition_dir(partition)
        hosted = partition in self._replicas
        self.close_replica(partition)
        if not os.path.isdir(pdir):
            return hosted
        trash = pdir + ".dropping"
        shutil.rmtree(trash, ignore_errors=True)
        os.replace(pdir, trash)  # atomic: a crash leaves either the replica or garbage
        snapshot.fsync_dir(self._data_dir)
        shutil.rmtree(trash, ignore_errors=True)
        log.info("partition %d: replica data dropped", partition)
        return True

    def _conf(self, pdir: str, self_addr: str) -> SyncObjConf:
        t = self._tuning
        journal = os.path.join(pdir, "raft.journal")
        port = self_addr.rsplit(":", 1)[1]
        return SyncObjConf(
            autoTick=False,
            appendEntriesUseBatch=False,
            appendEntriesPeriod=t.heartbeat_s,
            appendEntriesBatchSizeBytes=1 << 20,
            raftMinTimeout=t.election_min_s,
            raftMaxTimeout=t.election_max_s,
            connectionTimeout=max(3.5, t.election_max_s),
            connectionRetryTime=t.connection_retry_s,
            leaderFallbackTimeout=t.leader_fallback_s,
            commandsWaitLeader=False,
            journalFile=SyncedJournalPath(journal) if t.fsync else journal,
            fullDumpFile=os.path.join(pdir, "raft.snapshot"),
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
        )

    # -- status ------------------------------------------------------------------------------
    def _refresh_status(self) -> None:
        now = time.monotonic()
        if now - self._last_status_refresh < 0.1:
            return
        self._last_status_refresh = now
        for partition, replica in list(self._replicas.items()):
            self._status[partition] = _status_of(replica, now)

    def status(self, partition: int) -> ReplicaStatus | None:
        return self._status.get(partition)

    def all_status(self) -> list[ReplicaStatus]:
        return [self._status[p] for p in sorted(self._status)]

    def is_leader(self, partition: int) -> bool:
        replica = self._replicas.get(partition)
        return replica is not None and replica._isLeader()

    def leader_addr(self, partition: int) -> str | None:
        replica = self._replicas.get(partition)
        if replica is None:
            return None
        leader = replica._getLeader()
        return None if leader is None else str(leader.id)

    def members(self, partition: int) -> tuple[str, ...]:
        """Raft addresses of the voters as the local replica sees them (itself included)."""
        replica = self._replica(partition)
        return self.ticker.call(replica.member_addrs)

    async def change_member(
        self, partition: int, *, add: str | None = None, remove: str | None = None, timeout: float
    ) -> bool:
        """On the leader: add or remove one voter and wait until the change is applied here.
        Returns False when there was nothing to do (already a member / not a member)."""
        replica = self._replica(partition)
        if not replica._isLeader():
            raise errors.NotLeader(
                f"partition {partition}: membership changes go to the leader",
                partition=partition,
                leader=self.leader_addr(partition),
            )
        members = await asyncio.to_thread(self.members, partition)
        if add is not None:
            if add in members:
                return False
            propose = lambda cb: replica.addNodeToCluster(add, callback=cb)  # noqa: E731
        elif remove is not None:
            if remove not in members:
                return False
            if remove == str(replica.selfNode.id):
                raise errors.InvalidArgument(
                    f"partition {partition}: the leader cannot remove itself; transfer first",
                    partition=partition,
                )
            propose = lambda cb: replica.removeNodeFromCluster(remove, callback=cb)  # noqa: E731
        else:
            raise ValueError("change_member needs add or remove")
        await bridge.submit(
            propose,
            timeout=timeout,
            what="membership change",
            partition=partition,
            ambiguous_on_timeout=True,
        )
        log.info(
            "partition %d: membership change committed (add=%s remove=%s)", partition, add, remove
        )
        return True

    def digest_at(self, partition: int, index: int) -> tuple[bool, str | None]:
        return self._replica(partition).digests.lookup(index)

    async def propose_digest(self, partition: int, *, timeout: float) -> int:
        """Replicate a ``DigestCmd``; returns its log index once applied here."""
        replica = self._replica(partition)
        payload = commands.encode(commands.DigestCmd())
        result = await bridge.submit(
            lambda cb: replica.apply_command(payload, callback=cb),
            timeout=timeout,
            what="digest marker",
            partition=partition,
            ambiguous_on_timeout=False,
        )
        return int(result.index)

    def transfer_leadership(self, partition: int, target_addr: str) -> None:
        """Ask the local leader of ``partition`` to hand over to ``target_addr`` (best effort)."""
        replica = self._replica(partition)
        self.ticker.call(lambda: replica.transferLeadership(target_addr))

    # -- proposals ---------------------------------------------------------------------------
    async def propose(self, partition: int, cmd: commands.Command, *, timeout: float) -> Any:
        """Replicate ``cmd`` and return the processor's result once applied on this replica."""
        replica = self._replica(partition)
        payload = commands.encode(cmd)
        return await bridge.submit(
            lambda cb: replica.apply_command(payload, callback=cb),
            timeout=timeout,
            what="write",
            partition=partition,
            ambiguous_on_timeout=True,
        )

    async def read_barrier(self, partition: int, *, timeout: float) -> None:
        """Return once a barrier proposed after this call began has been applied locally."""
        self._replica(partition)
        state = self._barriers[partition]
        if state.inflight is None:
            waiter = asyncio.get_running_loop().create_future()
            self._launch_barrier(partition, state, waiter)
        else:
            # The barrier in flight may have been appended before this read arrived: wait for
            # the next one, which starts as soon as the current one ends.
            if state.next is None:
                state.next = asyncio.get_running_loop().create_future()
            waiter = state.next
        try:
            await asyncio.wait_for(asyncio.shield(waiter), timeout)
        except TimeoutError:
            raise errors.Unavailable(
                f"partition {partition}: read barrier not applied within {timeout:.1f}s",
                partition=partition,
                retry_after=1,
            ) from None

    def _launch_barrier(self, partition: int, state: _Barrier, fut: asyncio.Future[None]) -> None:
        state.inflight = fut
        task = asyncio.ensure_future(self._run_barrier(partition, fut))
        task.add_done_callback(lambda _t: self._after_barrier(partition, state))

    async def _run_barrier(self, partition: int, fut: asyncio.Future[None]) -> None:
        try:
            await self.propose_barrier(partition)
            fut.set_result(None)
        except Exception as exc:
            fut.set_exception(exc)
            fut.exception()  # mark retrieved: waiters may have given up already

    async def propose_barrier(self, partition: int, *, timeout: float = 5.0) -> None:
        replica = self._replica(partition)
        payload = commands.encode(commands.BarrierCmd())
        await bridge.submit(
            lambda cb: replica.apply_command(payload, callback=cb),
            timeout=timeout,
            what="read barrier",
            partition=partition,
            ambiguous_on_timeout=False,
        )

    def _after_barrier(self, partition: int, state: _Barrier) -> None:
        state.inflight = None
        nxt, state.next = state.next, None
        if nxt is None:
            return
        if partition in self._replicas:
            self._launch_barrier(partition, state, nxt)
        else:
            nxt.set_exception(errors.NotOwner(f"partition {partition} closed", partition=partition))
            nxt.exception()


def _status_of(replica: PartitionReplica, now: float) -> ReplicaStatus:
    st = replica.getStatus()
    leader = st.get("leader")
    others = sorted(str(n.id) for n in replica.otherNodes)
    connected = tuple(n for n in others if st.get(f"partner_node_status_server_{n}") == 2)
    return ReplicaStatus(
        partition=replica.partition,
        self_addr=str(replica.selfNode.id),
        role=_ROLES.get(int(st["state"]), "unknown"),
        leader_addr=None if leader is None else str(leader.id),
        term=int(st["raft_term"]),
        commit_index=int(st["commit_idx"]),
        last_applied=int(st["last_applied"]),
        leader_commit_index=st.get("leader_commit_idx"),
        store_applied=replica.store.applied_index(),
        members=tuple(sorted([str(replica.selfNode.id), *others])),
        connected=connected,
        has_quorum=bool(st["has_quorum"]),
        log_len=int(st["log_len"]),
        updated_monotonic=now,
    )


def _write_registration(pdir: str, partition: int, self_addr: str, peers: list[str]) -> None:
    path = os.path.join(pdir, REPLICA_FILE)
    if os.path.exists(path):
        return
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"partition": partition, "self_addr": self_addr, "peers": peers}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    snapshot.fsync_dir(pdir)
