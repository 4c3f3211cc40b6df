"""What this node knows about partition leaders across the cluster.

Leaders of local replicas come from their Raft state. For partitions this node does not host, it
asks the other nodes' ``/v1/admin/partitions`` (at most once per ``ttl_s``, in parallel, with a
short timeout) and keeps the answer of the replica with the highest term.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from kvnode.core import errors
from kvnode.core.model import NodeInfo, PartitionMap
from kvnode.service.forward import Forwarder
from kvnode.service.groups_api import RaftGroups

log = logging.getLogger(__name__)


class ClusterView:
    def __init__(
        self, *, node_id: str, groups: RaftGroups, forwarder: Forwarder, ttl_s: float = 1.0
    ) -> None:
        self._node_id = node_id
        self._groups = groups
        self._fwd = forwarder
        self._ttl_s = ttl_s
        self._map: PartitionMap | None = None
        self._remote: dict[int, tuple[int, str | None]] = {}  # partition -> (term, leader addr)
        self._reachable: dict[str, bool] = {}
        self._drained: frozenset[str] = frozenset()
        self._fetched_at = 0.0
        self._refresh_lock = asyncio.Lock()

    def set_map(self, pmap: PartitionMap) -> None:
        self._map = pmap

    def leader_node(self, partition: int) -> NodeInfo | None:
        """Best-known leader of ``partition`` (local Raft state first), or None."""
        if self._map is None:
            return None
        addr = self._groups.leader_addr(partition)
        if addr is None and not self._groups.hosts(partition):
            addr = self._remote.get(partition, (0, None))[1]
        return None if addr is None else self._map.node_for_raft_addr(partition, addr)

    async def snapshot(self) -> dict[str, Any]:
        """Leaders of every partition and node reachability, for ``GET /v1/cluster``."""
        await self._refresh()
        pmap = self._map
        if pmap is None:
            raise errors.Unavailable("no partition map", retry_after=1)
        leaders: dict[str, str | None] = {}
        for p in range(pmap.partitions):
            node = self.leader_node(p)
            leaders[str(p)] = None if node is None else node.node_id
        led: dict[str, int] = {}
        for leader in leaders.values():
            if leader is not None:
                led[leader] = led.get(leader, 0) + 1
        nodes = {
            n.node_id: {
                "url": n.http_url,
                "zone": n.zone,
                "reachable": n.node_id == self._node_id or self._reachable.get(n.node_id, False),
                "leader_of": led.get(n.node_id, 0),
                "replicas": len(pmap.partitions_of(n.node_id)),
                "drained": n.node_id in self._drained,
            }
            for n in pmap.nodes
        }
        return {"leaders": leaders, "nodes": nodes}

    async def drained_nodes(self, *, max_age: float) -> frozenset[str]:
        """Other nodes that reported themselves drained, as of an answer at most ``max_age``
        old (an unreachable node counts as not drained: it cannot be handed leadership anyway,
        it is not connected)."""
        await self._refresh(max_age=max_age)
        return self._drained

    async def refresh(self, *, max_age: float, timeout: float) -> None:
        """Ask the other nodes again unless the last answer is younger than ``max_age``, each
        within ``timeout`` (a request waiting for a leader it does not host calls this between
        attempts, and must not overrun its own deadline)."""
        await self._refresh(max_age=max_age, timeout=timeout)

    async def _refresh(self, *, max_age: float | None = None, timeout: float = 0.5) -> None:
        age = self._ttl_s if max_age is None else max_age
        async with self._refresh_lock:
            if time.monotonic() - self._fetched_at < age or self._map is None:
                return
            others = [n for n in self._map.nodes if n.node_id != self._node_id]
            answers = await asyncio.gather(
                *(self._fwd.partitions(n, timeout=timeout) for n in others), return_exceptions=True
            )
            remote: dict[int, tuple[int, str | None]] = {}
            drained: set[str] = set()
            for node, ans in zip(others, answers, strict=True):
                self._reachable[node.node_id] = not isinstance(ans, BaseException)
                if isinstance(ans, BaseException):
                    continue
                for st in ans:
                    if st.get("drained"):
                        drained.add(node.node_id)
                    p, term = int(st["partition"]), int(st["term"])
                    if st.get("leader") and term >= remote.get(p, (-1, None))[0]:
                        remote[p] = (term, str(st["leader"]))
            self._remote = remote
            self._drained = frozenset(drained)
            self._fetched_at = time.monotonic()
