"""Plain HTTP clients never see an election: retry routing within the request's deadline.

A node that holds a request for a partition without a known leader, or whose forwarding target
turned out stale (it answered not_leader / not_owner / stale_epoch, was unreachable, or had no
leader itself), waits for the leader to appear or move and tries again, until the caller's
deadline (``X-Ringkv-Timeout``, else ``request_timeout_s``). Only then does it answer 503 with
``Retry-After``.

What may be retried is decided by ``retriable`` on the domain error, which means "certainly not
applied": a refused connection, not_leader, a proposal PySyncObj discarded or denied. A write
whose forward timed out or whose proposal was not confirmed is ``UnknownOutcome`` and is never
retried (it stays 504). Only the node the client talked to retries (``hops == 0``), and only
when the client let it forward; a forwarded request answers at once, so the entry node keeps
the whole deadline and no two nodes wait on each other. ``Overloaded`` is backpressure and is
passed through.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from kvnode.core import errors
from kvnode.core.ops import RequestContext

log = logging.getLogger(__name__)
T = TypeVar("T")

MARGIN_S = 0.1
"""Time kept back from the deadline: no new attempt starts with less left than this."""
FIRST_PAUSE_S = 0.025
MAX_PAUSE_S = 0.4
IDEMPOTENT_ATTEMPT_MIN_S = 1.5
"""A read forwarded to a leader that stopped answering (paused) is abandoned after this long (or
half of the time left, if more) and retried elsewhere; a write never is (its outcome is unknown)."""

_REROUTE = (errors.NotLeader, errors.NotOwner, errors.StaleEpoch, errors.Unavailable)


def may_retry(exc: BaseException, ctx: RequestContext, remaining: float) -> bool:
    """Whether the entry node should wait and route ``exc``'s request again."""
    return (
        ctx.forward
        and ctx.hops == 0
        and isinstance(exc, _REROUTE)
        and exc.retriable
        and remaining > MARGIN_S
    )


def attempt_deadline(now: float, deadline: float, *, idempotent: bool) -> float:
    """Deadline of one forwarding attempt: the request's for a write, a shorter one for a read
    (a read that times out can be sent again, so a paused leader cannot eat the whole budget)."""
    if not idempotent:
        return deadline
    remaining = deadline - now
    return now + min(remaining, max(IDEMPOTENT_ATTEMPT_MIN_S, remaining / 2))


def give_up(last: errors.KvError, partition: int, waited: float) -> errors.KvError:
    """The answer once the deadline passed: 503 ``unavailable`` (with Retry-After) for a routing
    failure, whatever the last attempt said; any other error as it was."""
    if isinstance(last, _REROUTE):
        return errors.Unavailable(
            f"partition {partition} had no reachable leader within {waited:.1f}s "
            f"(last: {last.message})",
            partition=partition,
            retry_after=1,
        )
    return last


async def within_deadline(
    attempt: Callable[[float, int], Awaitable[T]],
    *,
    partition: int,
    ctx: RequestContext,
    deadline: float,
    settle: Callable[[float], Awaitable[None]],
) -> T:
    """``attempt(deadline, tries)`` until it succeeds, or fails in a way ``may_retry`` refuses.

    Between attempts ``settle(pause)`` waits for the leader to appear or move (at most ``pause``
    seconds, growing from 25 ms to 400 ms, never past the deadline). When only time ran out, the
    answer is ``give_up``'s 503."""
    started = time.monotonic()
    pause = FIRST_PAUSE_S
    tries = 0
    while True:
        tries += 1
        try:
            return await attempt(deadline, tries)
        except errors.KvError as exc:
            if not may_retry(exc, ctx, deadline - time.monotonic()):
                if may_retry(exc, ctx, float("inf")):  # only the deadline stopped us
                    raise give_up(exc, partition, time.monotonic() - started) from exc
                raise
            log.debug("partition %d: attempt %d failed (%s), waiting", partition, tries, exc)
        await settle(min(pause, max(0.0, deadline - time.monotonic() - MARGIN_S)))
        pause = min(pause * 2, MAX_PAUSE_S)
