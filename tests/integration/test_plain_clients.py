"""A plain HTTP client that never retries sees no election: not during a leader kill (kill -9),
not during a leader pause longer than the election timeout (SIGSTOP, SIGCONT), not during a
3 -> 5 -> 3 scale. The node it talks to waits for the new leader within the request deadline.

The client is raw aiohttp with a fresh connection per request (no keep-alive, so aiohttp cannot
silently re-send a PUT either); every answer is counted. Expected: no 503 and no transport
error. A 504 ``unknown_outcome`` on a PUT is counted and reported: it is the honest answer when
a write reached a leader that died or froze before confirming it, and such writes are then
checked to be either absent or present with the written value.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import signal
import urllib.parse
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from kvnode.local import scale_cluster
from kvnode.rebalance.executor import Options

from tests.support.clusters import eventually

pytestmark = pytest.mark.integration
log = logging.getLogger(__name__)

SCALE = Options(max_concurrent=2, step_timeout_s=90.0, poll_interval_s=0.1)


class RawLoad:
    """``workers`` loops of PUT k / strong GET k against ``endpoints()``, never retrying."""

    def __init__(self, endpoints: Callable[[], list[str]], *, prefix: str, workers: int = 4):
        self._endpoints = endpoints
        self._prefix = prefix
        self._workers = workers
        self.counts: collections.Counter[str] = collections.Counter()
        self.acked: dict[str, str] = {}
        self.unknown: dict[str, str] = {}
        self.bad: list[str] = []  # answers that must not happen, with their bodies
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> RawLoad:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True),
            timeout=aiohttp.ClientTimeout(total=20),
        )
        self._tasks = [asyncio.create_task(self._worker(i)) for i in range(self._workers)]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        await asyncio.wait_for(asyncio.gather(*self._tasks), 60)
        assert self._session is not None
        await self._session.close()

    async def acked_at_least(self, n: int, *, timeout: float, what: str) -> None:
        async def enough() -> bool:
            return self.counts["PUT 200"] >= n

        await eventually(enough, timeout=timeout, what=what)

    def summary(self) -> dict[str, Any]:
        return {"answers": dict(sorted(self.counts.items())), "unknown_puts": len(self.unknown)}

    async def _call(self, method: str, url: str, **kw: Any) -> tuple[int, dict[str, Any]]:
        assert self._session is not None
        async with self._session.request(method, url, **kw) as resp:
            body = await resp.json(content_type=None)
            return resp.status, body if isinstance(body, dict) else {}

    async def _worker(self, w: int) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            nodes = self._endpoints()
            base = nodes[(w + n) % len(nodes)]
            key, value = f"{self._prefix}{w}-{n}", f"v{n}"
            url = f"{base}/v1/kv/{urllib.parse.quote(key, safe='')}"
            if await self._one("PUT", url, key, value, json={"value": value}):
                await self._one("GET", url, key, value)

    async def _one(self, method: str, url: str, key: str, value: str, **kw: Any) -> bool:
        try:
            status, body = await self._call(method, url, **kw)
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.counts[f"{method} {type(exc).__name__}"] += 1
            self.bad.append(f"{method} {url}: {exc!r}")
            return False
        code = body.get("code", "")
        self.counts[f"{method} {status} {code}".strip()] += 1
        if status == 200:
            if method == "PUT":
                self.acked[key] = value
            elif body.get("value") != value:
                self.bad.append(f"GET {key} read {body.get('value')!r}, wrote {value!r}")
            return True
        if method == "PUT" and status == 504 and code == "unknown_outcome":
            self.unknown[key] = value
            return False
        self.bad.append(f"{method} {url}: {status} {body}")
        return False


async def check_outcome(h: Any, load: RawLoad, what: str) -> None:
    """No 503 nor transport error was seen; acknowledged writes are all there; a write whose
    outcome was unknown is either absent or holds exactly what was written."""
    log.warning("RESULT %s: %s", what, load.summary())
    print(f"RESULT {what}: {load.summary()}")
    assert load.bad == [], load.bad[:20]
    assert sum(v for k, v in load.counts.items() if k.startswith("PUT 200")) >= 20
    async with h.client(timeout=20.0) as client:
        for key, value in load.acked.items():
            got = await client.get(key)
            assert got is not None, f"acknowledged write {key} lost"
            assert got.value == value
        for key, value in load.unknown.items():
            got = await client.get(key)
            assert got is None or got.value == value


async def leader_node(h: Any, partition: int) -> str:
    info = await h.wait_ready()
    return str(info["leaders"][str(partition)])


async def test_leader_kill_is_invisible_to_a_plain_client(make_cluster) -> None:
    h = make_cluster(nodes=3, partitions=4)
    await h.wait_ready()
    victim = await leader_node(h, 0)
    c = h.cluster
    others = [c.pmap.node(n).http_url for n in c.node_ids if n != victim]
    async with RawLoad(lambda: others, prefix="kill-") as load:
        await load.acked_at_least(20, timeout=30, what="load started")
        c.kill_node(victim)
        before = load.counts["PUT 200"]
        await load.acked_at_least(before + 60, timeout=60, what="writes after the kill")
        await asyncio.sleep(2)  # keep the load on while the survivors settle
    await check_outcome(h, load, "leader kill")


async def test_leader_pause_is_invisible_to_a_plain_client(make_cluster) -> None:
    h = make_cluster(nodes=3, partitions=4)
    await h.wait_ready()
    victim = await leader_node(h, 0)
    c = h.cluster
    pid = c.pid(victim)
    assert pid is not None
    others = [c.pmap.node(n).http_url for n in c.node_ids if n != victim]
    async with RawLoad(lambda: others, prefix="pause-") as load:
        await load.acked_at_least(20, timeout=30, what="load started")
        os.kill(pid, signal.SIGSTOP)
        try:
            # longer than the election timeout (FAST_RAFT: 0.8-1.6 s), shorter than a deadline
            await asyncio.sleep(3.0)
        finally:
            os.kill(pid, signal.SIGCONT)
        before = load.counts["PUT 200"]
        await load.acked_at_least(before + 60, timeout=60, what="writes after the pause")
    await check_outcome(h, load, "leader pause")


async def test_scale_3_5_3_is_invisible_to_a_plain_client(make_cluster) -> None:
    h = make_cluster(nodes=3, partitions=8, reserve_nodes=5)
    await h.wait_ready()
    c = h.cluster
    stable = [c.pmap.node(f"node-{i}").http_url for i in range(3)]
    async with RawLoad(lambda: stable, prefix="scale-") as load:
        await load.acked_at_least(20, timeout=30, what="load started")
        up = await scale_cluster(c, 5, options=SCALE)
        assert up["status"] == "done", up
        down = await scale_cluster(c, 3, options=SCALE)
        assert down["status"] == "done", down
    await check_outcome(h, load, "scale 3-5-3")
