"""PySyncObj callbacks → asyncio results, always with a deadline.

PySyncObj loses callbacks (a leader that steps down never fails commands parked for commit,
research/libraries.md §A2), so every submission has its own deadline. What a timeout means
depends on the command: a write may still commit later (``UnknownOutcome``), a read barrier is
simply not known to have passed (``Unavailable``, safe to retry).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any, TypeVar

from pysyncobj import FAIL_REASON

from kvnode.core import errors

T = TypeVar("T")


def fail_reason_error(reason: int, *, what: str, partition: int) -> errors.KvError:
    """The domain error for a PySyncObj failure reason."""
    where = f"partition {partition}"
    if reason == FAIL_REASON.QUEUE_FULL:
        return errors.Overloaded(f"{where}: raft queue full", partition=partition, retry_after=1)
    if reason == FAIL_REASON.MISSING_LEADER:
        return errors.Unavailable(f"{where}: no leader", partition=partition, retry_after=1)
    if reason == FAIL_REASON.NOT_LEADER:
        return errors.NotLeader(f"{where}: not the leader", partition=partition, leader=None)
    if reason == FAIL_REASON.REQUEST_DENIED:
        # Refused before anything was appended (a membership change already in flight, the
        # leader's no-op not applied yet, a transfer target not caught up): safe to retry.
        return errors.Unavailable(
            f"{where}: {what} denied by raft for now", partition=partition, retry_after=0.5
        )
    if reason == FAIL_REASON.DISCARDED:
        # The entry at our index was overwritten by another term: ours was certainly not applied.
        return errors.Unavailable(
            f"{where}: {what} discarded by a leader change", partition=partition, retry_after=0.2
        )
    return errors.UnknownOutcome(
        f"{where}: {what} outcome unknown (raft reason {reason})", partition=partition
    )


async def submit(
    propose: Callable[[Callable[[Any, int], None]], None],
    *,
    timeout: float,
    what: str,
    partition: int,
    ambiguous_on_timeout: bool,
) -> Any:
    """Call ``propose(callback)`` and wait for PySyncObj to call back, within ``timeout``."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[Any] = loop.create_future()

    def settle(result: Any, reason: int) -> None:
        if fut.done():
            return
        if reason == FAIL_REASON.SUCCESS:
            fut.set_result(result)
        else:
            fut.set_exception(fail_reason_error(reason, what=what, partition=partition))

    def callback(result: Any, reason: int) -> None:
        loop.call_soon_threadsafe(settle, result, reason)

    propose(callback)
    try:
        return await asyncio.wait_for(fut, timeout)
    except TimeoutError:
        if ambiguous_on_timeout:
            raise errors.UnknownOutcome(
                f"partition {partition}: {what} not confirmed within {timeout:.1f}s; "
                "it may still be applied",
                partition=partition,
            ) from None
        raise errors.Unavailable(
            f"partition {partition}: {what} not confirmed within {timeout:.1f}s",
            partition=partition,
            retry_after=1,
        ) from None


def one_result() -> tuple[asyncio.Future[T], Callable[[T], None]]:
    """A future of the running loop and the callback that settles it from another thread (the
    ticker), once; a callback after the loop closed is dropped (nobody waits any more)."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[T] = loop.create_future()

    def settle(result: T) -> None:
        if not fut.done():
            fut.set_result(result)

    def done(result: T) -> None:
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, result)

    return fut, done
