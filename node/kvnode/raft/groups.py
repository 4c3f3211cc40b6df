"""All Raft groups of one node: the facade the service layer uses.

Every PySyncObj object is created, ticked and destroyed in the ``SharedTicker`` thread. The
asyncio side sees plain snapshots (``ReplicaStatus``, refreshed on every full tick) and awaits
proposals through ``bridge.submit``. The pieces live beside it: configuration (``tuning``),
hosting on disk and seeding (``registry``), strong reads by ReadIndex (``readindex``) with
coalesced log barriers as the fallback (``barriers``),
status views (``status``), quiescing idle groups (``quiesce``, ``quiescer``), and every
PySyncObj patch (``compat``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from kvnode.core import errors
from kvnode.raft import bridge, commands, followerread, readindex, registry, wal
from kvnode.raft.barriers import BarrierCoalescer
from kvnode.raft.groupcommit import GroupCommitLimits, GroupCommitter
from kvnode.raft.processor import CommandProcessor
from kvnode.raft.quiescer import Quiescer
from kvnode.raft.replica import PartitionReplica, SeedCapture, restore_header
from kvnode.raft.status import ReplicaStatus, status_of
from kvnode.raft.ticker import SharedTicker
from kvnode.raft.tuning import RaftTuning, syncobj_conf
from kvnode.storage import snapshot
from kvnode.storage.engine import PartitionStore
from kvnode.watch.history import ChangeHistory, HistoryLimits

log = logging.getLogger(__name__)

REPLICA_FILE = registry.REPLICA_FILE
_QUIESCED_STATUS_EVERY_S = 5.0

__all__ = ["REPLICA_FILE", "GroupManager", "RaftTuning", "ReplicaStatus"]


class GroupManager:
    """Owns the node's partition replicas."""

    def __init__(
        self,
        *,
        data_dir: str,
        tuning: RaftTuning,
        open_store: Callable[[str], PartitionStore],
        processor: CommandProcessor | None = None,
        history_limits: HistoryLimits | None = None,
    ) -> None:
        self._data_dir = data_dir
        self._history_limits = history_limits
        self._tuning = tuning
        self._open_store = open_store
        self._processor = processor or CommandProcessor()
        self.ticker = SharedTicker()
        # Whatever the mode now, journals named by a WAL left from a durability=fsync run get
        # what it made durable before any group opens (kvnode.raft.wal).
        wal.recover(data_dir)  # logs each journal it rebuilds
        self.wal = wal.NodeWal(data_dir) if tuning.fsync else None
        self.ticker.wal = self.wal
        self._replicas: dict[int, PartitionReplica] = {}
        self._status: dict[int, ReplicaStatus] = {}
        self._barriers = BarrierCoalescer(self.propose_barrier, self.hosts)
        # strong reads on followers: served here / not confirmed (forwarded) / nobody to ask
        self.follower_read_outcomes = {"served": 0, "declined": 0, "not_asked": 0}
        self.group_commit = GroupCommitter(
            self._propose_entry,
            limits=GroupCommitLimits(
                max_requests=tuning.group_commit_max_requests,
                max_inflight=tuning.group_commit_max_inflight,
            ),
            allowed=self._may_group,
        )
        self._last_status_refresh = 0.0
        self._status_due: set[int] = set()  # partitions whose group slept or woke
        self._last_full_status = 0.0
        self.quiescer = Quiescer(
            self._replicas,
            idle_s=tuning.quiesce_idle_s,
            heartbeat_s=tuning.heartbeat_s,
            fresh_s=tuning.election_min_s,
            on_sleep=self._slept,
            on_wake=self._woke,
        )

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self.ticker.start()
        self.ticker.on_full_tick(self.quiescer.on_round)
        self.ticker.on_full_tick(self._refresh_status)

    def stop(self) -> None:
        self.ticker.call(self._destroy_all)
        self.ticker.stop()
        if self.wal is not None:
            self.wal.close()

    def _destroy_all(self) -> None:
        for partition in list(self._replicas):
            self._close_in_ticker(partition)

    # -- replicas ----------------------------------------------------------------------------
    def partition_dir(self, partition: int) -> str:
        return registry.partition_dir(self._data_dir, partition)

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

    def history(self, partition: int) -> ChangeHistory | None:
        """The change history of the local replica of ``partition`` (None: not hosted)."""
        replica = self._replicas.get(partition)
        return None if replica is None else replica.history

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
        registry.write_registration(pdir, partition, self_addr, peers)
        store = self._open_store(os.path.join(pdir, "data"))
        conf = syncobj_conf(self._tuning, partition_dir=pdir, self_addr=self_addr, wal=self.wal)
        with self.ticker.constructing() as facade:
            replica = PartitionReplica(
                partition=partition,
                self_addr=self_addr,
                peers=[p for p in peers if p != self_addr],
                store=store,
                processor=self._processor,
                conf=conf,
                history_limits=self._history_limits,
            )
        replica.quiescer = self.quiescer
        self.ticker.add_group(replica, facade)
        self._replicas[partition] = replica
        log.info("partition %d: replica %s opened with peers %s", partition, self_addr, peers)

    def _close_in_ticker(self, partition: int) -> None:
        replica = self._replicas.pop(partition, None)
        if replica is None:
            return
        self.ticker.remove_group(replica)
        self.quiescer.forget(partition)
        replica._doDestroy()
        replica.history.close()
        replica.dumps.close()  # the dump worker reads the store: stop it before closing
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
        return registry.registered(self._data_dir)

    def seed_path(self, partition: int) -> str:
        """Where a joining replica's incoming seed stream is written before it is verified."""
        return os.path.join(self.partition_dir(partition), registry.SEED_FILE)

    def install_seed(self, partition: int) -> bytes:
        """Load the verified seed at ``seed_path`` into the (not yet hosted) replica's store and
        make it the replica's Raft snapshot; returns its header. Blocking: call in a worker."""
        if partition in self._replicas:
            raise errors.PreconditionFailed(f"partition {partition} is already hosted here")
        return registry.install_seed(self.partition_dir(partition), self._open_store)

    def capture_seed(self, partition: int) -> SeedCapture:
        replica = self._replica(partition)
        return self.ticker.call(replica.capture_seed)

    def capture_backup(self, partition: int) -> SeedCapture:
        """A seed plus a background digest of the same state under its store applied index."""
        replica = self._replica(partition)
        return self.ticker.call(replica.capture_backup)

    def install_restore(self, partition: int, *, source: str, peers: list[str]) -> bytes:
        """Make the backup file ``source`` the seed of the (not hosted, never opened) replica
        of ``partition`` in a new group of ``peers`` and install it as ``install_seed`` does;
        returns the new header. Blocking: call in a worker. The replica is opened by the
        caller, like a joiner."""
        if partition in self._replicas:
            raise errors.PreconditionFailed(f"partition {partition} is already hosted here")
        pdir = self.partition_dir(partition)
        if os.path.exists(os.path.join(pdir, registry.REPLICA_FILE)):
            raise errors.PreconditionFailed(
                f"partition {partition} already has a replica on this volume", partition=partition
            )
        with snapshot.SnapshotReader.open(source) as reader:
            old = reader.header
        header = restore_header(old, partition=partition, peers=peers)
        registry.write_restore_seed(pdir, source, header)
        return registry.install_seed(pdir, self._open_store)

    def drop_replica(self, partition: int) -> bool:
        """Close the replica (if open) and delete its directory. Blocking. False: none here."""
        hosted = partition in self._replicas
        self.close_replica(partition)
        removed = registry.remove_dir(self._data_dir, self.partition_dir(partition))
        if removed:
            log.info("partition %d: replica data dropped", partition)
        return removed or hosted

    def force_compaction(self, partition: int) -> None:
        """Snapshot the group now (it is written in the background, see ``raft.dump``)."""
        replica = self._replica(partition)
        self.ticker.call(replica.forceLogCompaction)

    # -- status ------------------------------------------------------------------------------
    def _slept(self, replica: PartitionReplica) -> None:
        self.ticker.sleep(replica)
        self._status_due.add(replica.partition)

    def _woke(self, replica: PartitionReplica) -> None:
        self.ticker.wake(replica)
        self._status_due.add(replica.partition)

    def _refresh_status(self) -> None:
        """Every 0.1 s for awake groups and those that just slept or woke; every replica every
        ``_QUIESCED_STATUS_EVERY_S`` (nothing moves in a quiesced group, whose silent members
        wake it)."""
        now = time.monotonic()
        if now - self._last_status_refresh < 0.1:
            return
        self._last_status_refresh = now
        if now - self._last_full_status >= _QUIESCED_STATUS_EVERY_S:
            self._last_full_status = now
            replicas = list(self._replicas.values())
        else:
            replicas = self.ticker.awake_groups()
            replicas += [self._replicas[p] for p in self._status_due if p in self._replicas]
        self._status_due.clear()
        for replica in replicas:
            if self._replicas.get(replica.partition) is replica:  # not closed meanwhile
                self._status[replica.partition] = status_of(replica, now)

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
        """Replicate ``cmd`` and return the processor's result once applied on this replica.
        A client write goes through group commit (``raft.groupcommit``): it may share its log
        entry with concurrent writes, and gets its own ``ApplyResult`` back all the same."""
        if isinstance(cmd, commands.WriteCmd):
            self._replica(partition)  # NotOwner at once, not after queueing
            return await self.group_commit.submit(partition, cmd, timeout=timeout)
        return await self._propose_entry(partition, cmd, timeout)

    def _may_group(self, partition: int) -> bool:
        """Whether every replica of ``partition`` decodes grouped entries (asked over Raft by
        the leader while writes want grouping; see ``compat``). Event loop."""
        replica = self._replicas.get(partition)
        if replica is None:
            return False
        replica.group_commit_wanted_at = time.monotonic()
        return replica.group_commit_ok

    async def _propose_entry(self, partition: int, cmd: commands.Command, timeout: float) -> Any:
        """One log entry, replicated and applied here."""
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
        """Return once a local read of ``partition`` is linearizable: every write acknowledged
        before this call began is applied here. ``read_mode`` 'readindex' confirms leadership
        with a quorum probe round (``raft.readindex``); 'barrier', or a replica that cannot use
        ReadIndex now (a follower, a leader with nothing of its term committed), appends a
        coalesced barrier entry to the log (``raft.barriers``)."""
        replica = self._replica(partition)
        deadline = time.monotonic() + timeout
        if self._tuning.read_mode == "readindex" and await self._read_index(
            replica, deadline, timeout
        ):
            return
        await self._barriers.wait(partition, timeout=max(0.01, deadline - time.monotonic()))

    async def _read_index(self, replica: PartitionReplica, deadline: float, timeout: float) -> bool:
        """True once served by ReadIndex; False when the caller must use the barrier."""
        outcome: asyncio.Future[readindex.Outcome]
        outcome, done = bridge.one_result()

        def register() -> readindex.Begin:
            begun = replica.read_index.begin(done, now=time.monotonic(), deadline=deadline)
            self.ticker.mark_dirty(replica)  # the probe goes out on this loop iteration
            return begun

        p = replica.partition
        try:
            begun = await asyncio.wait_for(asyncio.wrap_future(self.ticker.post(register)), timeout)
            if begun is readindex.Begin.FALLBACK:
                return False
            result = await asyncio.wait_for(outcome, max(0.01, deadline - time.monotonic()))
        except TimeoutError:
            result = readindex.Outcome.EXPIRED
        if result is readindex.Outcome.SERVE:
            return True
        if result is readindex.Outcome.DEPOSED:
            raise errors.NotLeader(
                f"partition {p}: leadership lost before the read was confirmed",
                partition=p,
                leader=None,
            )
        raise errors.Unavailable(
            f"partition {p}: read not confirmed by a quorum within {timeout:.1f}s",
            partition=p,
            retry_after=1,
        )

    async def follower_read(self, partition: int, *, timeout: float) -> bool:
        """On a follower replica of ``partition``: True once a local read is linearizable (the
        leader confirmed a read index by ReadIndex and this replica applied up to it; see
        ``raft.followerread``); False when the read must be forwarded to the leader instead (no
        leader known or able to answer, follower reads off, or no confirmation within
        ``timeout``). Never raises for those: forwarding is the fallback."""
        if self._tuning.read_mode != "readindex" or self._tuning.follower_reads != "on":
            return False
        replica = self._replica(partition)
        outcome: asyncio.Future[followerread.Outcome]
        outcome, done = bridge.one_result()

        def ask() -> bool:
            now = time.monotonic()
            asked = replica.follower_reads.begin(done, now=now, deadline=now + timeout)
            self.ticker.mark_dirty(replica)
            return asked

        counts = self.follower_read_outcomes
        try:
            if not await asyncio.wait_for(asyncio.wrap_future(self.ticker.post(ask)), timeout):
                counts["not_asked"] += 1
                return False
            result = await asyncio.wait_for(outcome, timeout)
        except TimeoutError:
            result = followerread.Outcome.DECLINED
        served = result is followerread.Outcome.SERVE
        counts["served" if served else "declined"] += 1
        return served

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
