"""Background duties of a node: TTL expiry and preferred-leader balancing.

Expiry: a record past its TTL is already invisible to reads; the partition leader also proposes an
``ExpireCmd`` so every replica deletes it identically (the command carries the time, replicas never
read their own clocks while applying).

Leader balancing: the first replica in the map is the partition's preferred leader, and placement
spreads preferred leaders evenly. A leader that is not the preferred one hands leadership over
(Raft TimeoutNow) once the preferred replica is connected and caught up, so the write load is
spread across nodes instead of piling on whichever node won the first elections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from kvnode.core import errors
from kvnode.raft import commands
from kvnode.raft.groups import GroupManager
from kvnode.settings import NodeSettings

if TYPE_CHECKING:
    from kvnode.service.node import NodeService

log = logging.getLogger(__name__)

EXPIRE_BATCH = 500
LEADER_BALANCE_INTERVAL_S = 2.0


class Housekeeper:
    def __init__(
        self, *, service: NodeService, groups: GroupManager, settings: NodeSettings
    ) -> None:
        self._service = service
        self._groups = groups
        self._settings = settings
        self._tasks: list[asyncio.Task[None]] = []

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
            if not self._groups.store(p).expired_keys(now, 1):
                continue
            try:
                await self._groups.propose(
                    p, commands.ExpireCmd(now_ms=now, limit=EXPIRE_BATCH), timeout=5.0
                )
            except errors.KvError as exc:
                log.debug("partition %d: expiry not proposed: %s", p, exc)

    async def _balance_once(self) -> None:
        pmap = self._service.pmap
        if pmap is None:
            return
        me = self._settings.node_id
        for p in self._groups.hosted():
            preferred = pmap.replicas[p][0] if p < pmap.partitions else me
            st = self._groups.status(p)
            if preferred == me or st is None or st.role != "leader" or not pmap.has_node(preferred):
                continue
            target = pmap.node(preferred).raft_addr(p)
            if target not in st.connected:
                continue
            log.info("partition %d: handing leadership to preferred replica %s", p, preferred)
            await asyncio.to_thread(self._groups.transfer_leadership, p, target)
