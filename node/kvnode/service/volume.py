"""What a node's data directory says about the node itself, beyond its data: its identity
(``kvnode.service.identity``: incarnation, partitions needing a reseed) and its maintenance drain
flag (``kvnode.service.drain``). Kept apart from NodeService so the decisions read in one place;
every change is persisted (fsynced) before it takes effect."""

from __future__ import annotations

import asyncio
import logging

from kvnode.core.model import PartitionMap
from kvnode.service import drain, identity

log = logging.getLogger(__name__)


class VolumeState:
    def __init__(self, data_dir: str) -> None:
        self._dir = data_dir
        self.drained = False
        self._identity: identity.Identity | None = None
        self._empty = False  # no identity, no map, no replica: decided at the first map

    async def open(self, *, has_map: bool, has_replicas: bool) -> None:
        """Read the volume at start. A volume with a map or replicas but no identity predates
        incarnations: its replicas are its own (upgrade path)."""
        self.drained = await asyncio.to_thread(drain.load, self._dir)
        self._identity = await asyncio.to_thread(identity.load, self._dir)
        if self._identity is None and (has_map or has_replicas):
            await self._save(identity.new())
        self._empty = self._identity is None

    async def adopting(self, pmap: PartitionMap, node_id: str) -> None:
        """Before ``pmap`` is adopted (and saved): an empty volume decides, once, which of the
        partitions the map gives it it must not open as a voter."""
        if not self._empty:
            return
        self._empty = False
        lost = identity.lost_partitions(pmap.epoch, pmap.partitions_of(node_id))
        await self._save(identity.new(lost))
        if lost:
            log.error(
                "empty volume, but map epoch %d lists this node for partitions %s: not "
                "rejoining them as a voter, they need a reseed",
                pmap.epoch,
                sorted(lost),
            )

    @property
    def needs_reseed(self) -> frozenset[int]:
        return frozenset() if self._identity is None else self._identity.needs_reseed

    async def reseeded(self, partition: int) -> None:
        if self._identity is not None and partition in self._identity.needs_reseed:
            await self._save(self._identity.reseeded(partition))
            log.info("partition %d: reseeded, no longer needs a reseed", partition)

    def drain_until_restart(self) -> None:
        """Drained in memory only (a stopping node): the restarted node is not drained."""
        self.drained = True

    async def set_drained(self, drained: bool) -> None:
        await asyncio.to_thread(drain.save, self._dir, drained)
        self.drained = drained

    async def _save(self, ident: identity.Identity) -> None:
        await asyncio.to_thread(identity.save, self._dir, ident)
        self._identity = ident
