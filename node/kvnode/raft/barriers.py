"""Strong-read barriers, coalesced per group.

A strong read proposes a ``BarrierCmd`` through the log; once this replica has applied it,
everything committed before the read began is applied locally too (the barrier was appended after
those writes were committed — Leader Completeness), so a local read is linearizable. At most one
barrier per group is in flight; reads arriving during it wait for the next one, which starts when
the current one ends: one log entry per round trip however many reads. Event-loop only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from kvnode.core import errors


class _Group:
    def __init__(self) -> None:
        self.inflight: asyncio.Future[None] | None = None
        self.next: asyncio.Future[None] | None = None


class BarrierCoalescer:
    """``wait(partition, timeout)`` returns once a barrier proposed after the call began has been
    applied locally. ``propose(partition)`` replicates one barrier; ``hosts(partition)`` says
    whether the group is still open here."""

    def __init__(
        self,
        propose: Callable[[int], Awaitable[None]],
        hosts: Callable[[int], bool],
    ) -> None:
        self._propose = propose
        self._hosts = hosts
        self._groups: dict[int, _Group] = {}

    async def wait(self, partition: int, *, timeout: float) -> None:
        state = self._groups.setdefault(partition, _Group())
        if state.inflight is None:
            waiter = asyncio.get_running_loop().create_future()
            self._launch(partition, state, waiter)
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

    def _launch(self, partition: int, state: _Group, fut: asyncio.Future[None]) -> None:
        state.inflight = fut
        task = asyncio.ensure_future(self._run(partition, fut))
        task.add_done_callback(lambda _t: self._after(partition, state))

    async def _run(self, partition: int, fut: asyncio.Future[None]) -> None:
        try:
            await self._propose(partition)
            fut.set_result(None)
        except Exception as exc:
            fut.set_exception(exc)
            fut.exception()  # mark retrieved: waiters may have given up already

    def _after(self, partition: int, state: _Group) -> None:
        state.inflight = None
        nxt, state.next = state.next, None
        if nxt is None:
            return
        if self._hosts(partition):
            self._launch(partition, state, nxt)
        else:
            nxt.set_exception(errors.NotOwner(f"partition {partition} closed", partition=partition))
            nxt.exception()
