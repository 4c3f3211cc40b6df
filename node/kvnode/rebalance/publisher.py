"""Pushes routing maps to nodes for the executor.

What must stay true: a node never gets an older map after a newer one (per node, one install at a
time, and nothing at or below the epoch it acknowledged), and a node that does not answer does not
hold the rebalance up: it is retried in the background with the latest map, and the executor
insists only where it must (before a DROP, and for the final map).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from kvnode.core import errors
from kvnode.core.model import NodeInfo, PartitionMap
from kvnode.rebalance import admin as admin_api

log = logging.getLogger(__name__)


class MapPublisher:
    """Installs maps on nodes: per node one install at a time, never an older epoch after a newer
    one. Nodes that failed an install are retried in the background, not waited for."""

    def __init__(self, admin: admin_api.NodeAdmin, *, call_timeout_s: float) -> None:
        self._admin = admin
        self._timeout = call_timeout_s
        self._acked: dict[str, int] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._background: dict[str, asyncio.Task[None]] = {}
        self._latest: PartitionMap | None = None
        self.lagging: set[str] = set()

    async def install(self, node: NodeInfo, pmap: PartitionMap) -> None:
        """Install ``pmap`` on ``node`` (raises if it did not take it)."""
        async with self._locks.setdefault(node.node_id, asyncio.Lock()):
            if self._acked.get(node.node_id, -1) >= pmap.epoch:
                return
            try:
                async with asyncio.timeout(self._timeout):
                    await self._admin.install_map(node, pmap)
            except TimeoutError as e:
                raise errors.Unavailable(f"node {node.node_id} did not answer") from e
            except errors.StaleEpoch as e:  # someone else writes maps: never retry over it
                raise errors.InvalidArgument(
                    f"node {node.node_id} holds a map newer than epoch {pmap.epoch}: {e}"
                ) from e
            self._acked[node.node_id] = pmap.epoch
            self.lagging.discard(node.node_id)

    async def broadcast(self, pmap: PartitionMap, nodes: Iterable[NodeInfo]) -> list[str]:
        """Best effort: returns the ids of nodes that have not taken ``pmap`` (yet)."""
        self._latest = pmap
        nodes = list(nodes)
        now = [n for n in nodes if n.node_id not in self.lagging]
        results = await asyncio.gather(
            *(self.install(n, pmap) for n in now), return_exceptions=True
        )
        for n, r in zip(now, results, strict=True):
            if isinstance(r, Exception):
                log.warning("map epoch %d not installed on node %s: %r", pmap.epoch, n.node_id, r)
                self.lagging.add(n.node_id)
        for n in nodes:
            if n not in now and n.node_id not in self._background:
                self._background[n.node_id] = asyncio.create_task(self._catch_up(n))
        return sorted(n.node_id for n in nodes if self._acked.get(n.node_id, -1) < pmap.epoch)

    async def _catch_up(self, node: NodeInfo) -> None:
        try:
            if self._latest is not None:
                await self.install(node, self._latest)
        except (errors.KvError, OSError) as e:
            log.debug("node %s still lags: %r", node.node_id, e)
        finally:
            self._background.pop(node.node_id, None)

    async def close(self) -> None:
        tasks = list(self._background.values())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
