"""Group commit: concurrent writes to one partition share a Raft entry (event loop only).

A write that finds its partition idle is proposed at once, alone, in the old single-request
format: at low load nothing waits for a timer or for company. Writes that arrive while
``max_inflight`` entries of the partition are in flight (appended, not yet applied here) queue,
and when an entry completes the queue leaves as ONE ``GroupCmd`` entry: one journal append, one
journal sync per replica in ``fsync`` mode, one LevelDB WriteBatch per replica. Every request
keeps its own outcome (``GroupApplyResult.requests``), its own deadline, and its own error.

Rules that keep a group equivalent to its requests applied one by one:

* **Disjoint keys.** A request touching a key already in the group waits for a later entry (and so
  do later requests on that key, so per-key arrival order is kept). Each key changes at most once
  per entry, so versions (the log index) stay unique per record, and no request of a group can
  see another's effect.
* **Bounded.** At most ``max_requests`` requests and ``max_bytes`` (estimated encoded size) per
  entry, well below PySyncObj's ``appendEntriesBatchSizeBytes`` (``raft.tuning``), above which an
  entry would be sent in chunks. A request bigger than the byte bound alone still goes alone.
* **Only where every replica decodes it.** ``allowed(partition)`` says whether every peer of the
  group confirmed it decodes grouped entries (``compat.CompatSyncObj.group_commit_ok``); until
  then, e.g. during a rolling upgrade from a release without group commit, every write is its
  own entry in the old format.
* **Outcome.** A queued request whose deadline passes before its entry is proposed is withdrawn
  and certainly not applied (``Unavailable``, retryable); once proposed, a timeout is
  ``UnknownOutcome``, as for any write. A failed proposal fails each of its requests with the
  same error (the entry was applied for all of them or for none).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from kvnode.core import errors
from kvnode.raft import commands
from kvnode.raft.processor import ApplyResult, GroupApplyResult

# Proposes one entry and returns what applying it here gave: (partition, command, timeout).
Propose = Callable[[int, commands.Command, float], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class GroupCommitLimits:
    """Bounds of one group-commit entry and of the pipeline per partition."""

    max_requests: int = 64
    max_bytes: int = 256 * 1024
    max_inflight: int = 1

    def __post_init__(self) -> None:
        if self.max_requests < 1 or self.max_bytes < 1 or self.max_inflight < 1:
            raise ValueError("group commit limits must be positive")


@dataclass(eq=False, slots=True)
class _Pending:
    cmd: commands.WriteCmd
    keys: frozenset[str]
    size: int
    deadline: float
    fut: asyncio.Future[Any]


@dataclass(slots=True)
class _Partition:
    inflight: int = 0
    queue: collections.deque[_Pending] = field(default_factory=collections.deque)


@dataclass(frozen=True, slots=True)
class GroupStats:
    """Counters for metrics and tests: entries proposed and requests they carried."""

    entries: int
    requests: int
    largest: int


def take_batch(queue: collections.deque[_Pending], limits: GroupCommitLimits) -> list[_Pending]:
    """Remove and return the next entry's requests from ``queue`` (pure but for the deque):
    the head always, then, in arrival order, every request whose keys are disjoint from the
    batch and from the keys of requests passed over, within the limits."""
    batch: list[_Pending] = []
    taken: set[str] = set()
    blocked: set[str] = set()
    size = 0
    kept: collections.deque[_Pending] = collections.deque()
    while queue:
        p = queue.popleft()
        fits = len(batch) < limits.max_requests and (not batch or size + p.size <= limits.max_bytes)
        if fits and taken.isdisjoint(p.keys) and blocked.isdisjoint(p.keys):
            batch.append(p)
            taken |= p.keys
            size += p.size
        else:
            kept.append(p)
            blocked |= p.keys
    queue.extend(kept)
    return batch


class GroupCommitter:
    """``submit(partition, cmd, timeout)`` → the request's own ``ApplyResult``, proposed alone
    when the partition is idle and coalesced with concurrent writes otherwise."""

    def __init__(
        self,
        propose: Propose,
        *,
        limits: GroupCommitLimits | None = None,
        allowed: Callable[[int], bool] = lambda _p: True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._propose = propose
        self.limits = limits or GroupCommitLimits()
        self._alone = dataclasses.replace(self.limits, max_requests=1)
        self._allowed = allowed
        self._clock = clock
        self._parts: dict[int, _Partition] = {}
        self._tasks: set[asyncio.Task[None]] = set()  # strong references while running
        self._entries = 0
        self._requests = 0
        self._largest = 0

    def stats(self) -> GroupStats:
        return GroupStats(self._entries, self._requests, self._largest)

    async def submit(self, partition: int, cmd: commands.WriteCmd, *, timeout: float) -> Any:
        loop = asyncio.get_running_loop()
        pending = _Pending(
            cmd=cmd,
            keys=commands.write_keys(cmd),
            size=commands.approx_size(cmd),
            deadline=self._clock() + timeout,
            fut=loop.create_future(),
        )
        state = self._parts.setdefault(partition, _Partition())
        state.queue.append(pending)
        self._pump(partition, state)
        try:
            return await asyncio.wait_for(asyncio.shield(pending.fut), timeout)
        except TimeoutError:
            if pending in state.queue:
                state.queue.remove(pending)
                raise errors.Unavailable(
                    f"partition {partition}: write not proposed within {timeout:.1f}s "
                    "(it was not applied)",
                    partition=partition,
                    retry_after=1,
                ) from None
            raise errors.UnknownOutcome(
                f"partition {partition}: write not confirmed within {timeout:.1f}s; "
                "it may still be applied",
                partition=partition,
            ) from None

    def _pump(self, partition: int, state: _Partition) -> None:
        while state.queue and state.inflight < self.limits.max_inflight:
            grouping = len(state.queue) > 1 and self._allowed(partition)
            batch = take_batch(state.queue, self.limits if grouping else self._alone)
            state.inflight += 1
            task = asyncio.ensure_future(self._run(partition, batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            task.add_done_callback(lambda _t: self._done(partition, state))

    def _done(self, partition: int, state: _Partition) -> None:
        state.inflight -= 1
        self._pump(partition, state)
        if not state.inflight and not state.queue and self._parts.get(partition) is state:
            del self._parts[partition]

    async def _run(self, partition: int, batch: list[_Pending]) -> None:
        self._entries += 1
        self._requests += len(batch)
        self._largest = max(self._largest, len(batch))
        cmd: commands.Command = (
            batch[0].cmd if len(batch) == 1 else commands.GroupCmd(reqs=tuple(p.cmd for p in batch))
        )
        timeout = max(0.05, max(p.deadline for p in batch) - self._clock())
        try:
            result = await self._propose(partition, cmd, timeout)
        except Exception as exc:
            for p in batch:
                _settle(p.fut, exc=exc)
            return
        for p, own in zip(batch, fan_out(result, len(batch)), strict=True):
            _settle(p.fut, result=own)


def fan_out(result: Any, n: int) -> list[ApplyResult | None]:
    """Each request's own result out of what applying its entry returned (None: the entry
    could not be decoded by the state machine, which the caller reports as internal)."""
    if n == 1:
        return [result]
    if isinstance(result, GroupApplyResult) and len(result.requests) == n:
        return list(result.requests)
    return [None] * n


def _settle(
    fut: asyncio.Future[Any], *, result: Any = None, exc: BaseException | None = None
) -> None:
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
        fut.exception()  # mark retrieved: the waiter may have given up already
    else:
        fut.set_result(result)
