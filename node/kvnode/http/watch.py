"""HTTP routes of watch: ``GET /v1/watch`` (server-sent events) and the node-to-node
``GET /v1/internal/watch`` (one partition's history, a bounded long-poll).

The stream is ``text/event-stream``: ``event: <kind>`` and one line of JSON ``data`` per event
(``kvnode.watch.model.Event``), and ``id: <token>`` on ready, progress, cutoff and end so an
``EventSource`` resumes by itself (``Last-Event-ID`` is read as ``from_version``). A comment
line keeps an idle connection alive. A connection that accepts nothing for ``stall_s`` while
changes wait is cut off (``slow_consumer``): the cutoff event is queued, given one second to
leave, and the connection is then aborted so its buffers are freed.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Mapping
from typing import Protocol

import orjson
from aiohttp import web

from kvnode.core import errors
from kvnode.core.ops import Limits
from kvnode.http import fastjson, parse
from kvnode.watch.model import Event, Position

log = logging.getLogger(__name__)

WATCH_PARAMS = frozenset({"prefix", "from_version", "duration_s"})
INTERNAL_PARAMS = frozenset({"partition", "after", "prefix", "wait_ms", "max_bytes"})
MAX_DURATION_S = 86400.0
MAX_WAIT_MS = 5000
MAX_POLL_BYTES = 16 * 1024 * 1024
FAREWELL_S = 1.0
_NUMBER = re.compile(r"[0-9]{1,9}(\.[0-9]{1,6})?")
_INT = re.compile(r"[0-9]{1,9}")


class WatchStream(Protocol):
    """One open watch (``kvnode.service.watch.Watch``)."""

    @property
    def token(self) -> str: ...

    def cut(self, reason: str, message: str) -> None: ...

    def batches(self) -> AsyncIterator[list[Event]]: ...


class WatchApi(Protocol):
    """What the watch routes need of the node (``kvnode.service.watch.WatchService``)."""

    @property
    def stall_s(self) -> float: ...

    async def open(
        self, *, prefix: str, from_version: str | None, duration_s: float | None = None
    ) -> WatchStream: ...

    async def release(self, watch: WatchStream) -> None: ...

    async def poll_local(
        self, partition: int, after: Position | None, *, prefix: str, wait_s: float, max_bytes: int
    ) -> dict[str, object]: ...


def sse(event: Event) -> bytes:
    """One server-sent event."""
    head = f"event: {event.kind}\n"
    if event.token:
        head += f"id: {event.token}\n"
    return head.encode() + b"data: " + orjson.dumps(event.to_dict()) + b"\n\n"


def _bad(field: str, what: str) -> errors.InvalidArgument:
    return errors.InvalidArgument(f"{field} {what}", field=field)


def parse_prefix(query: Mapping[str, str], limits: Limits) -> str:
    """The key prefix (as ``GET /v1/kv`` takes it: at most a key's length, else 413)."""
    prefix = query.get("prefix", "")
    if len(prefix.encode("utf-8", "surrogatepass")) > limits.max_key_bytes:
        raise errors.TooLarge("prefix longer than a key may be", field="prefix")
    return prefix


def parse_duration(query: Mapping[str, str]) -> float | None:
    raw = query.get("duration_s")
    if raw is None:
        return None
    if not _NUMBER.fullmatch(raw) or not 0 < float(raw) <= MAX_DURATION_S:
        raise _bad("duration_s", f"must be a number of seconds in (0, {MAX_DURATION_S:.0f}]")
    return float(raw)


def parse_int(query: Mapping[str, str], name: str, *, low: int, high: int, default: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    if not _INT.fullmatch(raw) or not low <= int(raw) <= high:
        raise _bad(name, f"must be an integer in [{low}, {high}]")
    return int(raw)


class WatchHandlers:
    def __init__(self, watches: WatchApi | None, limits: Limits) -> None:
        self._service = watches
        self._limits = limits

    @property
    def _watches(self) -> WatchApi:
        if self._service is None:
            raise errors.Unavailable("this node does not serve watches", retry_after=1)
        return self._service

    async def watch(self, request: web.Request) -> web.StreamResponse:
        query = parse.parse_query(request.raw_path, allowed=WATCH_PARAMS)
        prefix = parse_prefix(query, self._limits)
        from_version = query.get("from_version") or request.headers.get("Last-Event-ID") or None
        duration = parse_duration(query)
        handle = await self._watches.open(
            prefix=prefix, from_version=from_version, duration_s=duration
        )
        try:
            return await self._stream(request, handle)
        finally:
            await self._watches.release(handle)

    async def _stream(self, request: web.Request, watch: WatchStream) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await resp.prepare(request)
        async for batch in watch.batches():
            data = b"".join(sse(e) for e in batch) if batch else b": keep-alive\n\n"
            try:
                await asyncio.wait_for(resp.write(data), self._watches.stall_s)
            except TimeoutError:
                watch.cut(
                    "slow_consumer",
                    f"the connection accepted nothing for {self._watches.stall_s:.0f}s",
                )
                await self._farewell(request, resp, watch)
                return resp
        await resp.write_eof()
        return resp

    async def _farewell(
        self, request: web.Request, resp: web.StreamResponse, watch: WatchStream
    ) -> None:
        """Queue the cutoff event; abort the connection if it does not leave in time."""
        message = "the watcher did not read its stream; resume from the token"
        cutoff = Event("cutoff", watch.token, reason="slow_consumer", message=message)
        try:
            await asyncio.wait_for(resp.write(sse(cutoff)), FAREWELL_S)
            await asyncio.wait_for(resp.write_eof(), FAREWELL_S)
        except (TimeoutError, ConnectionError):
            if request.transport is not None:
                request.transport.abort()

    async def internal_watch(self, request: web.Request) -> web.Response:
        query = parse.parse_query(request.raw_path, allowed=INTERNAL_PARAMS)
        partition = parse.parse_partition(query)
        raw_after = query.get("after", "now")
        try:
            after = None if raw_after == "now" else Position.from_text(raw_after)
        except ValueError:
            raise _bad("after", "must be 'now' or a position such as 120 or 120.3") from None
        wait_ms = parse_int(query, "wait_ms", low=0, high=MAX_WAIT_MS, default=0)
        max_bytes = parse_int(query, "max_bytes", low=1, high=MAX_POLL_BYTES, default=1 << 20)
        body = await self._watches.poll_local(
            partition,
            after,
            prefix=parse_prefix(query, self._limits),
            wait_s=wait_ms / 1000,
            max_bytes=max_bytes,
        )
        return fastjson.json_response(body)


def add_routes(app: web.Application, watches: WatchApi | None, limits: Limits) -> None:
    """Add the watch routes to a node's app (``make_app``); without a service they answer
    503 (an app built without one, as in tests of other routes)."""
    h = WatchHandlers(watches, limits)
    app.router.add_route("GET", "/v1/watch", h.watch, name="watch.get")
    app.router.add_route("GET", "/v1/internal/watch", h.internal_watch, name="internal_watch.get")
