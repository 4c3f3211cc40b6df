"""Watch streams: one ``Watch`` per connected watcher, fanned out over every partition.

A watcher names a key prefix and a start (``kvnode.watch.cursor``: a resume token, a version, or
now). ``WatchService.open`` resolves a start position on every partition first, so a position
older than every replica keeps is refused with ``Compacted`` (410) before the stream begins.
Then one task per partition (``_pump``) reads its ``Feed`` into the watcher's buffer, in commit
order per partition; ``Watch.batches`` hands the buffer to the HTTP layer and keeps the
*delivered* position of every partition, which is the resume token it reports.

Bounded memory: the buffer holds at most ``buffer_bytes`` plus one change per partition (each
partition reads at most its share of the room left, and a read returns at least one change); a
full buffer makes the pumps wait instead of reading. A watcher that keeps falling behind is cut
off when its position leaves the history (``compacted``); one whose connection takes nothing for
``stall_s`` is cut off by the HTTP layer (``slow_consumer``). Every cut-off ends with an event
naming the reason and the token to resume from.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import prometheus_client

from kvnode.client import NodeHttp
from kvnode.core import errors
from kvnode.core.model import PartitionMap
from kvnode.service.watchfeed import Batch, Feed, Histories, read_local, read_to_json
from kvnode.watch import cursor
from kvnode.watch.model import Change, Event, Position

log = logging.getLogger(__name__)

POLL_WAIT_S = 2.0
PROGRESS_S = 2.0
HEARTBEAT_S = 15.0
RETRY_S = (0.2, 2.0)


@dataclass(frozen=True, slots=True)
class WatchLimits:
    buffer_bytes: int = 1024 * 1024
    stall_s: float = 30.0
    max_watchers: int = 1024


class WatchMetrics:
    def __init__(self, registry: prometheus_client.CollectorRegistry | None) -> None:
        self.active = prometheus_client.Gauge(
            "ringkv_watch_active", "Watch streams open on this node.", registry=registry
        )
        self.delivered = prometheus_client.Counter(
            "ringkv_watch_changes_delivered_total", "Changes handed to watchers.", registry=registry
        )
        self.cutoffs = prometheus_client.Counter(
            "ringkv_watch_cutoffs_total",
            "Watchers cut off, by reason.",
            ["reason"],
            registry=registry,
        )
        self.lag = prometheus_client.Histogram(
            "ringkv_watch_lag_seconds",
            "Proposal of a change to its delivery to a watcher's connection.",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=registry,
        )
        self.buffered = prometheus_client.Gauge(
            "ringkv_watch_buffered_bytes",
            "Bytes of changes waiting in watchers' buffers.",
            registry=registry,
        )


class Watch:
    """One watcher's stream. Create through ``WatchService.open``; iterate ``batches``."""

    def __init__(
        self,
        service: WatchService,
        *,
        prefix: str,
        feeds: list[Feed],
        start: dict[int, Position],
        deadline: float | None,
    ) -> None:
        self._svc = service
        self.prefix = prefix
        self._feeds = feeds
        self._fetched = dict(start)
        self.delivered = dict(start)
        self._deadline = deadline
        self._queue: deque[tuple[int, Position, Change | None, int]] = deque()
        self._bytes = 0
        self._ready = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._end: Event | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def token(self) -> str:
        return cursor.encode(self.delivered, len(self._feeds))

    def start(self, first: dict[int, Batch]) -> None:
        for p, batch in first.items():
            self._push(p, batch)
        self._tasks = [asyncio.create_task(self._pump(f)) for f in self._feeds]

    def _push(self, p: int, batch: Batch) -> None:
        for change, rev in batch.changes:
            self._queue.append((p, rev, change, change.size))
            self._bytes += change.size
        last = batch.changes[-1][1] if batch.changes else self._fetched[p]
        if batch.position > last:  # moved past changes of other prefixes: a marker
            self._queue.append((p, batch.position, None, 0))
        self._fetched[p] = max(self._fetched[p], batch.position)
        self._svc.metrics.buffered.inc(sum(c.size for c, _ in batch.changes))
        if self._bytes >= self._svc.limits.buffer_bytes:
            self._room.clear()
        self._ready.set()

    async def _pump(self, feed: Feed) -> None:
        p = feed.partition
        failures = 0
        while self._end is None:
            await self._room.wait()
            # Each partition reads at most its share of the room left, so all of them together
            # stay within the buffer, overshooting by at most one change each.
            room = max(1, (self._svc.limits.buffer_bytes - self._bytes) // len(self._feeds))
            try:
                batch = await feed.fetch(
                    self._fetched[p], prefix=self.prefix, max_bytes=room, wait_s=POLL_WAIT_S
                )
            except errors.Compacted as exc:
                self.cut("compacted", exc.message)
                return
            except errors.KvError as exc:
                failures += 1
                pause = min(RETRY_S[1], RETRY_S[0] * 2 ** min(failures, 4))
                log.info("watch: partition %d: %s; retrying in %.1fs", p, exc.message, pause)
                await asyncio.sleep(pause)
                continue
            failures = 0
            if batch.changes or batch.position > self._fetched[p]:
                self._push(p, batch)

    def cut(self, reason: str, message: str) -> None:
        """End the stream with a ``cutoff`` event (idempotent; the first reason wins)."""
        if self._end is None:
            self._end = Event("cutoff", "", reason=reason, message=message)
            self._svc.metrics.cutoffs.labels(reason=reason).inc()
            log.info("watch on prefix %r cut off (%s): %s", self.prefix, reason, message)
        self._ready.set()
        self._room.set()

    async def batches(self, max_bytes: int = 64 * 1024) -> AsyncIterator[list[Event]]:
        """Lists of events ready to send, until the stream ends (its last event is ``cutoff``
        or ``end``). A ``ready`` event with the start token comes first; ``progress`` events
        carry the token when positions moved without a matching change."""
        yield [Event("ready", self.token)]
        last_progress = time.monotonic()
        sent_token = self.token
        while True:
            wait = PROGRESS_S
            if self._deadline is not None:
                wait = min(wait, self._deadline - time.monotonic())
            if not self._queue and self._end is None and wait > 0:
                self._ready.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._ready.wait(), wait)
            out = self._take(max_bytes)
            now = time.monotonic()
            if self._end is None and self._deadline is not None and now >= self._deadline:
                self._end = Event("end", "", reason="duration", message="duration_s reached")
            if self._end is not None and not self._queue:
                out.append(_with_token(self._end, self.token))
                yield out
                return
            if not out and now - last_progress >= PROGRESS_S and self.token != sent_token:
                out.append(Event("progress", self.token))
            if out or now - last_progress >= HEARTBEAT_S:  # [] is a keep-alive
                sent_token, last_progress = self.token, now
                yield out

    def _take(self, max_bytes: int) -> list[Event]:
        out: list[Event] = []
        used = 0
        now_ms = time.time() * 1000
        metrics = self._svc.metrics
        while self._queue and (not out or used < max_bytes):
            p, rev, change, size = self._queue.popleft()
            self._bytes -= size
            used += size
            self.delivered[p] = rev
            if change is not None:
                out.append(Event("change", "", change=change, rev=rev))
                metrics.delivered.inc()
                metrics.buffered.dec(size)
                if change.ts_ms:
                    metrics.lag.observe(max(0.0, (now_ms - change.ts_ms) / 1000))
        if self._bytes < self._svc.limits.buffer_bytes:
            self._room.set()
        return out

    async def close(self) -> None:
        if self._end is None:
            self._end = Event("end", "", reason="closed", message="stream closed")
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._svc.metrics.buffered.dec(self._bytes)
        self._bytes = 0
        self._queue.clear()


def _with_token(event: Event, token: str) -> Event:
    return Event(event.kind, token, reason=event.reason, message=event.message)


class WatchService:
    """Opens watches on this node and serves other nodes' feeds from the local histories."""

    def __init__(
        self,
        *,
        node_id: str,
        histories: Histories,
        current_map: Callable[[], PartitionMap | None],
        http: NodeHttp,
        limits: WatchLimits,
        registry: prometheus_client.CollectorRegistry | None = None,
    ) -> None:
        self.node_id = node_id
        self._histories = histories
        self._map = current_map
        self._http = http
        self.limits = limits
        self.metrics = WatchMetrics(registry)
        self._open: set[Watch] = set()

    @property
    def stall_s(self) -> float:
        return self.limits.stall_s

    def _require_map(self) -> PartitionMap:
        pmap = self._map()
        if pmap is None:
            raise errors.Unavailable("this node has no partition map yet", retry_after=1)
        return pmap

    async def open(
        self, *, prefix: str, from_version: str | None, duration_s: float | None = None
    ) -> Watch:
        """A started watch; raises ``Compacted`` / ``InvalidArgument`` / ``Unavailable``
        before anything is streamed."""
        if len(self._open) >= self.limits.max_watchers:
            raise errors.Overloaded(
                f"this node serves {len(self._open)} watches, its limit", retry_after=1
            )
        pmap = self._require_map()
        asked = cursor.parse_from(from_version, pmap.partitions)
        feeds = [
            Feed(p, node_id=self.node_id, histories=self._histories, current_map=self._map,
                 http=self._http)
            for p in range(pmap.partitions)
        ]  # fmt: skip
        share = max(1024, self.limits.buffer_bytes // pmap.partitions)
        firsts = await asyncio.gather(
            *(
                f.fetch(None if asked is None else asked[f.partition], prefix=prefix,
                        max_bytes=share, wait_s=0)
                for f in feeds
            )
        )  # fmt: skip
        start = {p: (b.position if asked is None else asked[p]) for p, b in enumerate(firsts)}
        deadline = None if duration_s is None else time.monotonic() + duration_s
        watch = Watch(self, prefix=prefix, feeds=feeds, start=start, deadline=deadline)
        watch.start({p: b for p, b in enumerate(firsts) if asked is not None})
        self._open.add(watch)
        self.metrics.active.set(len(self._open))
        return watch

    async def release(self, watch: object) -> None:
        """Close a watch from ``open`` (typed ``object`` to satisfy the HTTP layer's protocol)."""
        assert isinstance(watch, Watch)
        await watch.close()
        self._open.discard(watch)
        self.metrics.active.set(len(self._open))

    async def stop(self) -> None:
        """End every open watch (at shutdown, so no stream holds the server open)."""
        for watch in list(self._open):
            watch.cut("shutdown", f"node {self.node_id} is shutting down")

    async def poll_local(
        self, partition: int, after: Position | None, *, prefix: str, wait_s: float, max_bytes: int
    ) -> dict[str, object]:
        """Another node's feed reading the local replica (``GET /v1/internal/watch``)."""
        pmap = self._require_map()
        if not 0 <= partition < pmap.partitions:
            raise errors.InvalidArgument(
                f"partition must be in [0, {pmap.partitions})", field="partition"
            )
        history = self._histories.history(partition)
        if history is None or self.node_id not in pmap.replicas[partition]:
            raise errors.NotOwner(
                f"node {self.node_id} serves no change history of partition {partition}",
                partition=partition,
            )
        read = await read_local(history, after, prefix=prefix, max_bytes=max_bytes, wait_s=wait_s)
        if read.compacted:
            raise errors.Compacted(
                f"partition {partition}: position {after.to_text() if after else ''} is older "
                f"than the change history kept here (complete after {read.kept_after})",
                partition=partition,
                kept_after=read.kept_after,
            )
        if read.closed:
            raise errors.NotOwner(f"partition {partition} was closed here", partition=partition)
        return read_to_json(read)
