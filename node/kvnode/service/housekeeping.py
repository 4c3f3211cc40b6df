"""Background duties of a node: TTL expiry and preferred-leader balancing.

Expiry: a record past its TTL is already invisible to reads; the partition leader also proposes an
``ExpireCmd`` so every replica deletes it identically (the command carries the time, replicas never
read their own clocks while applying).

Leader balancing: the first replica in the map is the partition's preferred leader, and placement
spreads preferred leaders evenly. A leader that is not the preferred one hands leadership over
(Raft TimeoutNow) once the preferred replica is connected and caught up, so the write load is
spread across nodes instead of piling on whichever node won the first elections. The rule is
``handoff_target``: never to a replica that is not a verified, caught-up voter of the current map,
nor to a drained node; a drained node hands away what it leads (``kvnode.service.drain``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from kvnode.core import errors
from kvnode.core.model import PartitionMap
from kvnode.raft import commands
from kvnode.raft.groups import ReplicaStatus
from kvnode.service.drain import drain_target
from kvnode.service.groups_api import RaftGroups
from kvnode.settings import NodeSettings

if TYPE_CHECKING:
    from kvnode.service.node import NodeService

log = logging.getLogger(__name__)

EXPIRE_BATCH = 500
LEADER_BALANCE_INTERVAL_S = 2.0


class Housekeeper:
    def __init__(self, *, service: NodeService, groups: RaftGroups, settings: NodeSettings) -> None:
        self._service = service
        self._groups = groups
        self._settings = settings
        self._tasks: list[asyncio.Task[None]] = []
        # partition -> (store applied index, earliest expiry then): nothing can expire in that
        # partition before that time unless a write was applied since
        self._expiry_seen: dict[int, tuple[int, int | None]] = {}

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._loop(self._expire_once, self._settings.expiry_interval_s)),
            asyncio.create_task(self._loop(self._balance_once, LEADER_BALANCE_INTERVAL_S)),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self, step: object, interval: float) -> None:
        assert callable(step)
        while True:
            await asyncio.sleep(interval)
            try:
                await step()
            except Exception:
                log.exception("housekeeping step %s failed", getattr(step, "__name__", step))

    async def _expire_once(self) -> None:
        for p in self._groups.hosted():
            if not self._groups.is_leader(p):
                continue
            now = self._service.now_ms()
            store = self._groups.store(p)
            applied = store.applied_index()
            seen = self._expiry_seen.get(p)
            if seen is not None and seen[0] == applied and (seen[1] is None or now < seen[1]):
                continue  # one int comparison instead of a LevelDB scan per partition per second
            if not store.expired_keys(now, 1):
                self._expiry_seen[p] = (applied, store.next_expiry_ms())
                continue
            try:
                await self._groups.propose(
                    p, commands.ExpireCmd(now_ms=now, limit=EXPIRE_BATCH), timeout=5.0
                )
            except errors.KvError as exc:
                log.debug("partition %d: expiry not proposed: %s", p, exc)

    async def balance_now(self) -> None:
        """One balancing pass at once (a drain does not wait for the next period)."""
        await self._balance_once()

    async def _balance_once(self) -> None:
        pmap = self._service.pmap
        if pmap is None:
            return
        me, drained_here = self._settings.node_id, self._service.drained
        led = [p for p in self._groups.hosted() if self._groups.is_leader(p)]
        if not led:
            return
        drained = await self._service.view.drained_nodes(max_age=LEADER_BALANCE_INTERVAL_S)
        for p in led:
            st = self._groups.status(p)
            if drained_here:
                target = drain_target(pmap, me, p, st, drained)
                why = "this node is drained"
            else:
                target = handoff_target(pmap, me, p, st, drained)
                why = "preferred replica"
            if target is None:
                continue
            log.info("partition %d: handing leadership to %s (%s)", p, target[0], why)
            await asyncio.to_thread(self._groups.transfer_leadership, p, target[1])


def handoff_target(
    pmap: PartitionMap,
    me: str,
    p: int,
    st: ReplicaStatus | None,
    drained: frozenset[str] = frozenset(),
) -> tuple[str, str] | None:
    """(node id, raft address) this leader should hand partition ``p`` to, or None.

    Only when this node leads, the map's preferred replica (element 0) is another node, the map
    states exactly the Raft voters this leader sees (a map lagging a membership change is not
    acted on), and the preferred replica is a connected voter. During a move ``map_at`` puts a
    joiner first only once it is verified; PySyncObj itself refuses a target whose log is not
    complete. Together: leadership never goes to an unverified or lagging replica. Nor to a
    ``drained`` node (maintenance drain, ``kvnode.service.drain``).
    """
    if st is None or st.role != "leader" or p >= pmap.partitions:
        return None
    replicas = pmap.replicas[p]
    preferred = replicas[0]
    if preferred == me or preferred in drained or not all(pmap.has_node(n) for n in replicas):
        return None
    addrs = {pmap.node(n).raft_addr(p) for n in replicas}
    target = pmap.node(preferred).raft_addr(p)
    if addrs != set(st.members) or target not in st.connected:
        return None
    return preferred, target
