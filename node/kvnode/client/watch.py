"""``Watcher``: a watch on a key prefix as an async iterator that resumes itself.

It reads ``GET /v1/watch`` (server-sent events) from any node and keeps the position of every
partition it has delivered, so after a disconnect, a node that went away, a leader change or a
rebalance it reconnects — to the next endpoint or mapped node, with backoff — from exactly
there (``from_version=<token>``): each change is yielded once, in commit order per partition
(hence per key). ``token`` is the resume token after the last change yielded; a caller that
persists it can resume in a later process (``Client.watch(prefix, from_token=...)``).

The only errors it raises are the ones a retry cannot fix: ``Compacted`` (the position is older
than the history the cluster keeps: read the current state, then watch from now),
``InvalidArgument`` (a bad token or prefix) and ``TlsVerifyFailed`` (a node's certificate does
not verify). The caller stops watching by leaving the loop or
calling ``aclose``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from kvnode.client import transport
from kvnode.core import errors
from kvnode.watch import cursor
from kvnode.watch.model import Position

log = logging.getLogger(__name__)

IDLE_TIMEOUT_S = 45.0  # the server sends a keep-alive every 15 s
BACKOFF_S = (0.1, 2.0)
FATAL = (errors.Compacted, errors.InvalidArgument, errors.TooLarge)


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One change as the client yields it; ``token`` resumes right after it."""

    kind: str
    key: str
    value: str | None
    version: int
    prev_version: int
    partition: int
    rev: str
    expires_at_ms: int | None
    ts_ms: int
    token: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "key": self.key,
            "value": self.value,
            "version": self.version,
            "prev_version": self.prev_version,
            "partition": self.partition,
            "expires_at_ms": self.expires_at_ms,
            "token": self.token,
        }


def parse_sse(buffer: bytearray) -> list[tuple[str, bytes]]:
    """Complete events at the front of ``buffer`` as (event, data), removed from it; comment
    lines (keep-alives) are skipped."""
    out: list[tuple[str, bytes]] = []
    while (end := buffer.find(b"\n\n")) >= 0:
        block = bytes(buffer[:end])
        del buffer[: end + 2]
        kind, data = "message", b""
        for line in block.split(b"\n"):
            if line.startswith(b"event:"):
                kind = line[6:].strip().decode()
            elif line.startswith(b"data:"):
                data = line[5:].strip()
        if data:
            out.append((kind, data))
    return out


class Watcher:
    """Async iterator of ``WatchEvent`` (see the module docstring)."""

    def __init__(
        self,
        candidates: Callable[[], list[str]],
        *,
        prefix: str,
        from_token: str | None = None,
        session: aiohttp.ClientSession | None = None,
        idle_timeout: float = IDLE_TIMEOUT_S,
        tls: ssl.SSLContext | None = None,
        token: str | None = None,
    ) -> None:
        self._candidates = candidates
        self._tls = tls
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.prefix = prefix
        self._positions: dict[int, Position] | None = None
        self._start = from_token
        self._session = session
        self._owns_session = session is None
        self._idle = idle_timeout
        self._rng = random.Random()
        self.reconnects = 0
        """Streams opened after the first one (each resumed from ``token``)."""
        self.source: str | None = None
        """The node URL serving the current (or last) stream."""

    @property
    def token(self) -> str | None:
        """Resume token after the last change yielded (None before the first connection)."""
        if self._positions is None:
            return self._start
        return cursor.encode(self._positions, len(self._positions))

    def __aiter__(self) -> AsyncIterator[WatchEvent]:
        return self._run()

    async def aclose(self) -> None:
        if self._session is not None and self._owns_session:
            await self._session.close()

    async def _run(self) -> AsyncIterator[WatchEvent]:
        failures = attempt = 0
        try:
            while True:
                urls = self._candidates()
                url = urls[attempt % len(urls)]
                attempt += 1  # whatever ends this stream, the next attempt tries the next node
                try:
                    async for event in self._stream(url):
                        failures = 0
                        yield event
                    continue  # the server ended the stream (shutdown, slow reader): resume
                except FATAL:
                    raise
                except aiohttp.ClientConnectorCertificateError as exc:
                    raise transport.connect_error(exc, url) from exc  # retrying cannot fix it
                except (errors.KvError, aiohttp.ClientError, TimeoutError, OSError) as exc:
                    failures += 1
                    ceiling = min(BACKOFF_S[1], BACKOFF_S[0] * 2 ** min(failures, 5))
                    pause = self._rng.uniform(ceiling / 2, ceiling)
                    log.info("watch via %s failed (%r); resuming in %.2fs", url, exc, pause)
                    await asyncio.sleep(pause)
        finally:
            await self.aclose()

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
            self._owns_session = True
        return self._session

    async def _stream(self, url: str) -> AsyncIterator[WatchEvent]:
        params = {"prefix": self.prefix}
        if self.token is not None:
            params["from_version"] = self.token
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=2.0, sock_read=self._idle)
        session = self._get_session()
        if self._tls is not None:
            url = transport.https_url(url)
        async with session.get(
            url + "/v1/watch",
            params=params,
            timeout=timeout,
            headers=self._headers,
            ssl=True if self._tls is None else self._tls,
        ) as resp:
            if resp.status != 200:
                raise _error(resp.status, await resp.read())
            if self.source is not None:
                self.reconnects += 1
            self.source = url
            buffer = bytearray()
            async for chunk in resp.content.iter_any():
                buffer += chunk
                for kind, data in parse_sse(buffer):
                    event = self._handle(kind, orjson.loads(data))
                    if event is not None:
                        yield event
                    elif kind in ("cutoff", "end"):
                        return
        raise errors.Unavailable(f"watch stream from {url} ended without a closing event")

    def _handle(self, kind: str, body: dict[str, Any]) -> WatchEvent | None:
        if kind in ("ready", "progress", "end", "cutoff") and body.get("token"):
            token = str(body["token"])
            self._positions = cursor.decode(token, cursor.partitions_of(token))
        if kind == "cutoff":
            reason = body.get("reason")
            log.info("watch cut off by the server (%s): %s", reason, body.get("message"))
            if reason == "compacted":
                raise errors.Compacted(str(body.get("message")), token=body.get("token"))
            return None
        if kind != "change" or self._positions is None:
            return None
        p = int(body["partition"])
        self._positions[p] = Position.from_text(str(body["rev"]))
        return WatchEvent(
            kind=str(body["kind"]),
            key=str(body["key"]),
            value=body.get("value"),
            version=int(body["version"]),
            prev_version=int(body.get("prev_version") or 0),
            partition=p,
            rev=str(body["rev"]),
            expires_at_ms=body.get("expires_at_ms"),
            ts_ms=int(body.get("ts_ms") or 0),
            token=cursor.encode(self._positions, len(self._positions)),
        )


def _error(status: int, raw: bytes) -> errors.KvError:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, dict) and "code" in body:
        return errors.error_from_dict(body)
    return errors.Unavailable(f"watch answered HTTP {status}", status=status)
