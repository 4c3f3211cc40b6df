"""Partition admin: what the rebalance executor asks of one node (``/v1/admin/partitions/{p}``).

Nodes are named by node id at this boundary; Raft addresses (PySyncObj's peer ids) stay inside.
Every operation is idempotent, so an executor that lost an answer simply asks again:

* ``seed_stream``: a consistent snapshot of the local replica (store + the Raft log position and
  membership it corresponds to), in the checksummed snapshot format, streamed to a joiner.
* ``join``: fetch a seed from a member, verify and load it, install it as the replica's Raft
  snapshot and open the replica. PySyncObj then resumes the joiner's log right after the seed,
  so the leader only sends the entries written since (never its own snapshot: its transfer of
  large snapshots is unreliable, research/libraries.md §A3).
* ``change_member`` (leader): one voter added or removed, waiting until it committed.
* ``transfer_leader``: hand leadership over and wait until the target leads.
* ``start_digest``/``digest``: a digest marker through the log; each replica digests its data as
  of that index in the background, so digests of replicas compare under live writes.
* ``drop``: close and delete a replica the installed map no longer lists here.
* ``backup_stream`` (leader): after a read barrier, a seed of the replica (so it holds every
  write acknowledged before the request), with its state digested in the background under its
  applied index for the taker to compare (``kvnode.backup``).
* ``restore``: on a node of a new cluster with no map yet, verify a backup of one partition,
  install it as the replica's Raft snapshot for the given voters and open the replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, BinaryIO

from kvnode.client import NodeHttp
from kvnode.core import errors
from kvnode.core.model import NodeInfo, PartitionMap
from kvnode.raft.groups import GroupManager
from kvnode.raft.replica import seed_header_info
from kvnode.service.node import NodeService
from kvnode.storage.snapshot import SnapshotCorrupt, SnapshotEncoder

log = logging.getLogger(__name__)

SEED_TIMEOUT_S = 1800.0
SEED_IDLE_TIMEOUT_S = 60.0
DEFAULT_TIMEOUT_S = 10.0


class PartitionAdmin:
    """Admin operations on this node's partition replicas."""

    def __init__(self, *, service: NodeService, groups: GroupManager, http: NodeHttp) -> None:
        self._service = service
        self._groups = groups
        self._http = http
        self._join_locks: dict[int, asyncio.Lock] = {}

    # -- helpers -----------------------------------------------------------------------------
    def _map(self, partition: int) -> PartitionMap:
        pmap = self._service.pmap
        if pmap is None:
            raise errors.Unavailable("this node has no partition map yet", retry_after=1)
        if not 0 <= partition < pmap.partitions:
            raise errors.InvalidArgument(
                f"partition must be in [0, {pmap.partitions}), got {partition}", field="partition"
            )
        return pmap

    def _node(self, pmap: PartitionMap, node_id: str, *, field: str) -> NodeInfo:
        if not pmap.has_node(node_id):
            raise errors.InvalidArgument(
                f"node {node_id!r} is not in the installed map (epoch {pmap.epoch}); "
                "install a map that lists it first",
                field=field,
            )
        return pmap.node(node_id)

    def _node_id(self, pmap: PartitionMap, partition: int, addr: str | None) -> str | None:
        if addr is None:
            return None
        node = pmap.node_for_raft_addr(partition, addr)
        return addr if node is None else node.node_id

    def _require_leader(self, pmap: PartitionMap, partition: int) -> None:
        if not self._groups.hosts(partition):
            raise errors.NotOwner(
                f"node {self._service.node_id} holds no replica of partition {partition}",
                partition=partition,
            )
        if not self._groups.is_leader(partition):
            leader = self._node_id(pmap, partition, self._groups.leader_addr(partition))
            raise errors.NotLeader(
                f"node {self._service.node_id} is not the leader of partition {partition}",
                partition=partition,
                leader=leader,
            )

    # -- state -------------------------------------------------------------------------------
    def replica_state(self, partition: int) -> dict[str, Any]:
        pmap = self._map(partition)
        if not self._groups.hosts(partition):
            reseed = partition in self._service.needs_reseed
            return {"partition": partition, "hosted": False, "needs_reseed": reseed}
        st = self._groups.status(partition)
        stats = self._groups.store(partition).stats()
        out: dict[str, Any] = {
            "partition": partition,
            "hosted": True,
            "keys": stats.keys,
            "size_bytes": stats.bytes,
            "store_applied": stats.applied_index,
        }
        if st is None:  # opened a moment ago: no status sample yet
            return {**out, "role": "none", "members": []}
        return {
            **out,
            "role": st.role,
            "leader_id": self._node_id(pmap, partition, st.leader_addr),
            "term": st.term,
            "commit_index": st.commit_index,
            "last_applied": st.last_applied,
            "lag": st.lag,
            "members": sorted(
                m for a in st.members if (m := self._node_id(pmap, partition, a)) is not None
            ),
        }

    # -- seeding -----------------------------------------------------------------------------
    async def seed_stream(self, partition: int) -> tuple[dict[str, Any], AsyncIterator[bytes]]:
        """(description, body chunks) of a seed of the local replica."""
        self._map(partition)
        cap = await asyncio.to_thread(self._groups.capture_seed, partition)
        encoder = iter(SnapshotEncoder(header=cap.header, items=cap.items))
        meta = {"raft_index": cap.raft_index, "store_applied": cap.store_applied}
        log.info("partition %d: streaming seed at raft index %d", partition, cap.raft_index)
        return meta, _chunks(encoder)

    async def join(self, partition: int, *, source: str) -> dict[str, Any]:
        lock = self._join_locks.setdefault(partition, asyncio.Lock())
        async with lock:
            return await self._join(partition, source)

    async def _join(self, partition: int, source: str) -> dict[str, Any]:
        pmap = self._map(partition)
        if self._groups.hosts(partition):
            return {"partition": partition, "already_hosted": True}
        me = self._node(pmap, self._service.node_id, field="node")
        src = self._node(pmap, source, field="source")
        if src.node_id == me.node_id:
            raise errors.InvalidArgument("a node cannot seed from itself", field="source")
        started = time.monotonic()
        seed = self._groups.seed_path(partition)
        f = await asyncio.to_thread(_create, seed)
        try:
            with f:
                nbytes = await self._http.download(
                    src.http_url,
                    f"/v1/admin/partitions/{partition}/snapshot",
                    f,
                    timeout=SEED_TIMEOUT_S,
                    idle_timeout=SEED_IDLE_TIMEOUT_S,
                )
                await asyncio.to_thread(_fsync, f)
            header = await asyncio.to_thread(self._groups.install_seed, partition)
        except SnapshotCorrupt as exc:
            raise errors.Unavailable(
                f"partition {partition}: seed from {source} failed verification ({exc}); retry",
                partition=partition,
                retry_after=1,
            ) from exc
        finally:
            await asyncio.to_thread(_remove_if_present, seed)
        seeded_partition, store_applied, peers = seed_header_info(header)
        if seeded_partition != partition:
            raise errors.Internal(f"seed of partition {seeded_partition} offered for {partition}")
        await asyncio.to_thread(
            self._groups.open_replica, partition, self_addr=me.raft_addr(partition), peers=peers
        )
        await self._service.reseeded(partition)
        seconds = time.monotonic() - started
        keys = self._groups.store(partition).stats().keys
        log.info(
            "partition %d: joined from %s (%d bytes, %d keys, applied %d) in %.2fs",
            partition,
            source,
            nbytes,
            keys,
            store_applied,
            seconds,
        )
        return {
            "partition": partition,
            "already_hosted": False,
            "bytes": nbytes,
            "items": keys,
            "applied_index": store_applied,
            "seconds": round(seconds, 3),
        }

    # -- backup and restore --------------------------------------------------------------------
    async def backup_stream(
        self, partition: int, *, timeout: float
    ) -> tuple[dict[str, Any], AsyncIterator[bytes]]:
        """(description, body chunks) of a backup of ``partition`` taken on its leader."""
        pmap = self._map(partition)
        self._require_leader(pmap, partition)
        await self._groups.read_barrier(partition, timeout=timeout)
        cap = await asyncio.to_thread(self._groups.capture_backup, partition)
        encoder = iter(SnapshotEncoder(header=cap.header, items=cap.items))
        meta = {"raft_index": cap.raft_index, "store_applied": cap.store_applied}
        log.info(
            "partition %d: streaming backup at applied index %d (epoch %d)",
            partition,
            cap.store_applied,
            pmap.epoch,
        )
        return meta, _chunks(encoder)

    async def restore(
        self, partition: int, *, peers: list[str], body: AsyncIterator[bytes]
    ) -> dict[str, Any]:
        lock = self._join_locks.setdefault(partition, asyncio.Lock())
        async with lock:
            return await self._restore(partition, peers, body)

    async def _restore(
        self, partition: int, peers: list[str], body: AsyncIterator[bytes]
    ) -> dict[str, Any]:
        if self._service.pmap is not None:
            raise errors.PreconditionFailed(
                f"node {self._service.node_id} already has a partition map (epoch "
                f"{self._service.pmap.epoch}): restore only into a new cluster, before its map "
                "is installed",
                partition=partition,
            )
        me = self._service.raft_addr(partition)
        if me not in peers:
            raise errors.InvalidArgument(
                f"peers {peers} do not include this node's Raft address {me}", field="peers"
            )
        if self._groups.hosts(partition):
            found = await asyncio.to_thread(_restored, self._groups.store(partition))
            return {"partition": partition, "already_hosted": True, **found}
        started = time.monotonic()
        path = self._groups.seed_path(partition) + ".restore"
        try:
            nbytes = await _receive(path, body)
            await asyncio.to_thread(
                self._groups.install_restore, partition, source=path, peers=peers
            )
        except SnapshotCorrupt as exc:
            raise errors.InvalidArgument(
                f"partition {partition}: the backup failed verification ({exc}); nothing was "
                "restored",
                partition=partition,
            ) from exc
        except ValueError as exc:
            raise errors.InvalidArgument(
                f"partition {partition}: {exc}", partition=partition
            ) from exc
        finally:
            await asyncio.to_thread(_remove_if_present, path)
        await asyncio.to_thread(self._groups.open_replica, partition, self_addr=me, peers=peers)
        found = await asyncio.to_thread(_restored, self._groups.store(partition))
        log.info(
            "partition %d: restored %d bytes (%d keys, applied %d) for voters %s in %.2fs",
            partition,
            nbytes,
            found["keys"],
            found["applied_index"],
            peers,
            time.monotonic() - started,
        )
        return {"partition": partition, "already_hosted": False, "bytes": nbytes, **found}

    # -- membership and leadership -----------------------------------------------------------
    async def change_member(
        self, partition: int, *, add: str | None, remove: str | None, timeout: float
    ) -> dict[str, Any]:
        pmap = self._map(partition)
        self._require_leader(pmap, partition)
        addr = self._node(pmap, add or remove or "", field="add" if add else "remove")
        raft_addr = addr.raft_addr(partition)
        changed = await self._groups.change_member(
            partition,
            add=raft_addr if add else None,
            remove=raft_addr if remove else None,
            timeout=timeout,
        )
        members = await asyncio.to_thread(self._groups.members, partition)
        return {
            "partition": partition,
            "changed": changed,
            "members": sorted(str(self._node_id(pmap, partition, m)) for m in members),
        }

    async def transfer_leader(self, partition: int, *, to: str, timeout: float) -> dict[str, Any]:
        pmap = self._map(partition)
        target = self._node(pmap, to, field="node_id").raft_addr(partition)
        deadline = time.monotonic() + timeout
        next_ask = 0.0
        while True:
            leader = self._groups.leader_addr(partition) if self._groups.hosts(partition) else None
            if leader == target:
                return {"partition": partition, "leader_id": to}
            if time.monotonic() >= deadline:
                raise errors.Unavailable(
                    f"partition {partition}: leadership did not move to {to} within "
                    f"{timeout:.1f}s (leader: {self._node_id(pmap, partition, leader)})",
                    partition=partition,
                    retry_after=1,
                )
            if time.monotonic() >= next_ask:
                self._require_leader(pmap, partition)
                await asyncio.to_thread(self._groups.transfer_leadership, partition, target)
                next_ask = time.monotonic() + 1.0
            await asyncio.sleep(0.05)

    # -- digests -----------------------------------------------------------------------------
    async def start_digest(self, partition: int, *, timeout: float) -> dict[str, Any]:
        pmap = self._map(partition)
        self._require_leader(pmap, partition)
        index = await self._groups.propose_digest(partition, timeout=timeout)
        return {"partition": partition, "index": index}

    def digest(self, partition: int, index: int) -> dict[str, Any]:
        self._map(partition)
        if not self._groups.hosts(partition):
            raise errors.NotOwner(
                f"node {self._service.node_id} holds no replica of partition {partition}",
                partition=partition,
            )
        known, value = self._groups.digest_at(partition, index)
        if known:
            return {"partition": partition, "index": index, "digest": value}
        st = self._groups.status(partition)
        if st is not None and st.last_applied >= index:
            raise errors.NotFound(
                f"partition {partition}: no digest at index {index} here (applied "
                f"{st.last_applied}); start a new one",
                partition=partition,
            )
        return {"partition": partition, "index": index, "digest": None}

    # -- drop --------------------------------------------------------------------------------
    async def drop(self, partition: int) -> dict[str, Any]:
        pmap = self._map(partition)
        if self._service.node_id in pmap.replicas[partition]:
            raise errors.PreconditionFailed(
                f"the installed map (epoch {pmap.epoch}) still lists node "
                f"{self._service.node_id} as a replica of partition {partition}",
                partition=partition,
                epoch=pmap.epoch,
            )
        dropped = await asyncio.to_thread(self._groups.drop_replica, partition)
        return {"partition": partition, "dropped": dropped}


def _chunks(encoder: Iterator[bytes]) -> AsyncIterator[bytes]:
    """The encoder's chunks, each produced in a worker thread (it reads LevelDB)."""

    async def body() -> AsyncIterator[bytes]:
        while True:
            chunk = await asyncio.to_thread(next, encoder, None)
            if chunk is None:
                return
            yield chunk

    return body()


async def _receive(path: str, body: AsyncIterator[bytes]) -> int:
    """Write a request body to ``path`` (fsynced); returns its size."""
    f = await asyncio.to_thread(_create, path)
    nbytes = 0
    with f:
        async for chunk in body:
            await asyncio.to_thread(f.write, chunk)
            nbytes += len(chunk)
        await asyncio.to_thread(_fsync, f)
    return nbytes


def _restored(store: Any) -> dict[str, Any]:
    """What a restored replica holds, digest included (read back from LevelDB, so the caller
    compares the data that landed, not the bytes it sent). Blocking."""
    stats = store.stats()
    return {"keys": stats.keys, "applied_index": stats.applied_index, "digest": store.digest()}


def _create(path: str) -> BinaryIO:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return open(path, "wb")  # closed by the caller's with-block


def _remove_if_present(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


def _fsync(f: Any) -> None:
    f.flush()
    os.fsync(f.fileno())
