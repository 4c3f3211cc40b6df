"""Where a request of a partition goes from this node: served here, or forwarded to which node.

Pure decisions over the node's map, its Raft groups (``RaftGroups``) and its ``ClusterView``;
``NodeService`` calls them once per attempt (``kvnode.service.waiting`` retries attempts), and
``settle`` is the wait between two attempts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from kvnode.core import errors
from kvnode.core.model import NodeInfo, PartitionMap
from kvnode.core.ops import Consistency, RequestContext
from kvnode.service.forward import MAX_HOPS
from kvnode.service.groups_api import RaftGroups
from kvnode.service.view import ClusterView


class Router:
    def __init__(
        self,
        *,
        node_id: str,
        groups: RaftGroups,
        view: ClusterView,
        current_map: Callable[[], PartitionMap],
    ) -> None:
        self.node_id = node_id
        self._groups = groups
        self.view = view
        self._require_map = current_map

    def leader_target(self, p: int, ctx: RequestContext, tries: int = 1) -> NodeInfo:
        """The node to forward a leader-only request of partition ``p`` to (or raise). Without a
        known leader, a node that does not host ``p`` asks its replicas in turn (``tries``)."""
        pmap = self._require_map()
        leader = self.view.leader_node(p)
        hosted = self._groups.hosts(p)
        if not ctx.forward or ctx.hops >= MAX_HOPS:
            hint = None if leader is None else leader.node_id
            if hosted:
                raise errors.NotLeader(
                    f"node {self.node_id} is not the leader of partition {p}",
                    partition=p,
                    leader=hint,
                    epoch=pmap.epoch,
                )
            raise errors.NotOwner(
                f"node {self.node_id} holds no replica of partition {p}",
                partition=p,
                leader=hint,
                replicas=list(pmap.replicas[p]),
                epoch=pmap.epoch,
            )
        if leader is not None and leader.node_id != self.node_id:
            return leader
        if hosted:
            raise errors.Unavailable(f"partition {p} has no leader", partition=p, retry_after=1)
        return _in_turn(pmap.replicas_of(p), tries)

    def serves_locally(self, pmap: PartitionMap, p: int, consistency: Consistency) -> bool:
        """Strong reads run on the leader. Eventual reads run on any local replica the map lists:
        a joining replica (still catching up) or a removed one (no longer updated) forwards."""
        if not self._groups.hosts(p):
            return False
        if self._groups.is_leader(p):
            return True
        return consistency is Consistency.EVENTUAL and self.node_id in pmap.replicas[p]

    def may_read_as_follower(self, pmap: PartitionMap, p: int) -> bool:
        """A strong read may be served by this follower replica once its leader confirms a read
        index (``RaftGroups.follower_read``): it hosts ``p`` and the map lists it (a joining
        replica catches up first; a removed one is no longer updated)."""
        return (
            self._groups.hosts(p)
            and not self._groups.is_leader(p)
            and self.node_id in pmap.replicas[p]
        )

    def read_target(
        self, p: int, consistency: Consistency, ctx: RequestContext, tries: int
    ) -> NodeInfo:
        if consistency is Consistency.EVENTUAL:
            return self.eventual_target(p, ctx, tries)
        return self.leader_target(p, ctx, tries)

    def eventual_target(self, p: int, ctx: RequestContext, tries: int = 1) -> NodeInfo:
        pmap = self._require_map()
        if not ctx.forward or ctx.hops >= MAX_HOPS:
            raise errors.NotOwner(
                f"node {self.node_id} holds no replica of partition {p}",
                partition=p,
                replicas=list(pmap.replicas[p]),
                epoch=pmap.epoch,
            )
        leader = self.view.leader_node(p)
        if leader is not None and tries == 1:
            return leader
        return _in_turn(pmap.replicas_of(p), tries)

    async def settle(self, p: int, pause: float) -> None:
        """Wait up to ``pause`` for partition ``p``'s leader to appear or change: the local
        replica's Raft state when hosted, else a fresh look at the other nodes."""
        end = time.monotonic() + pause
        if not self._groups.hosts(p):
            await self.view.refresh(max_age=pause, timeout=min(0.5, max(0.1, pause)))
        before = self._groups.leader_addr(p) if self._groups.hosts(p) else None
        while (left := end - time.monotonic()) > 0:
            await asyncio.sleep(min(0.02, left))
            if self._groups.hosts(p) and self._groups.leader_addr(p) not in (None, before):
                return


def _in_turn(nodes: Sequence[NodeInfo], tries: int) -> NodeInfo:
    """The replica to ask on attempt ``tries`` (1-based): the first, then each in turn."""
    return nodes[(tries - 1) % len(nodes)]
