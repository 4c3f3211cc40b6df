"""Strong reads through real node processes stay linearizable while the leader is SIGSTOPped past
the election timeout and then resumed.

Plain HTTP clients (raw aiohttp, no retries, one node each) do PUT, version-conditional PUT and
strong GET on three keys of a one-partition cluster; most of them talk to the node that is
paused, so when it resumes it finds requests that arrived while a newer leader was acknowledging
writes. The recorded history is checked with ``tests.support.linearizability``. A PUT that does
not answer 200 or 412 is recorded as ``unknown`` (a forwarded or timed-out write may still apply).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from typing import Any

import aiohttp
import pytest

from tests.support.clusters import eventually
from tests.support.linearizability import Recorder, check

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]
KEYS = ("k0", "k1", "k2")


class HttpLoad:
    def __init__(self, urls: list[str]) -> None:
        self.urls = urls  # one per client
        self.recorder = Recorder()
        self.stop = asyncio.Event()
        self.inflight: dict[int, float] = {}

    def ok_ops(self, clients: list[int] | None = None) -> int:
        ops = self.recorder.ops
        return sum(1 for o in ops if o.outcome == "ok" and (clients is None or o.client in clients))

    async def run(self) -> None:
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True),
            timeout=aiohttp.ClientTimeout(total=8),
        ) as http:
            await asyncio.gather(*(self._client(http, c) for c in range(len(self.urls))))

    async def _client(self, http: aiohttp.ClientSession, c: int) -> None:
        rnd = random.Random(c)
        seen: dict[str, int] = {}
        n = 0
        while not self.stop.is_set():
            n += 1
            key, roll = rnd.choice(KEYS), rnd.random()
            url = f"{self.urls[c]}/v1/kv/{key}"
            if roll < 0.5:
                await self._get(http, c, url, key, seen)
            else:
                cond = seen.get(key) if roll > 0.8 else None
                await self._put(http, c, url, key, f"c{c}-{n}", cond, seen)

    async def _get(
        self, http: aiohttp.ClientSession, c: int, url: str, key: str, seen: dict[str, int]
    ) -> None:
        op = self.recorder.begin(key=key, kind="read", client=c)
        self.inflight[c] = op.invoke
        try:
            async with http.get(url, params={"consistency": "strong"}) as resp:
                status, body = resp.status, await _json(resp)
        except (aiohttp.ClientError, TimeoutError):
            self.recorder.end(op, "fail")
            return
        if status == 404:
            self.recorder.end(op, value=None, version=None)
        elif status == 200:
            seen[key] = int(body["version"])
            self.recorder.end(op, value=body["value"], version=int(body["version"]))
        else:
            self.recorder.end(op, "fail")

    async def _put(
        self,
        http: aiohttp.ClientSession,
        c: int,
        url: str,
        key: str,
        value: str,
        cond: int | None,
        seen: dict[str, int],
    ) -> None:
        kind = "write" if cond is None else "cas"
        op = self.recorder.begin(key=key, kind=kind, client=c, value=value, if_version=cond)
        self.inflight[c] = op.invoke
        payload: dict[str, Any] = {"value": value}
        if cond is not None:
            payload["if_version"] = cond
        try:
            async with http.put(url, json=payload) as resp:
                status, body = resp.status, await _json(resp)
        except (aiohttp.ClientError, TimeoutError):
            self.recorder.end(op, "unknown")
            return
        if status == 200:
            seen[key] = int(body["version"])
            succeeded = True if kind == "cas" else None
            self.recorder.end(op, version=int(body["version"]), succeeded=succeeded)
        elif status == 412 and kind == "cas":
            self.recorder.end(op, succeeded=False)
        elif status in (400, 413, 429):
            self.recorder.end(op, "fail")  # refused before anything was proposed
        else:
            self.recorder.end(op, "unknown")


async def _json(resp: aiohttp.ClientResponse) -> Any:
    try:
        return await resp.json(content_type=None)
    except ValueError:
        return {}


async def _leader_seen_by(http_url: str) -> str | None:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http,
        http.get(f"{http_url}/v1/cluster") as resp,
    ):
        body = await resp.json()
    leader = body["leaders"]["0"]
    return None if leader is None else str(leader)


async def test_strong_reads_linearizable_across_a_leader_sigstop(make_cluster) -> None:
    h = make_cluster(nodes=3, partitions=1, env={"KVNODE_LEADER_FALLBACK_S": "8"})
    info = await h.wait_ready()
    victim = str(info["leaders"]["0"])
    c = h.cluster
    pid = c.pid(victim)
    assert pid is not None
    vurl = c.pmap.node(victim).http_url
    others = [c.pmap.node(n).http_url for n in c.node_ids if n != victim]
    sticky = list(range(5))
    load = HttpLoad([vurl] * len(sticky) + [others[i % 2] for i in range(4)])
    runner = asyncio.ensure_future(load.run())
    free = [i for i in range(len(load.urls)) if i not in sticky]
    try:
        await eventually(_ok(lambda: load.ok_ops() >= 40), timeout=30, what="traffic")
        os.kill(pid, signal.SIGSTOP)
        try:
            new = await eventually(
                lambda: _new_leader(others[0], victim), timeout=20, what="a new leader"
            )
            during = load.ok_ops(free)
            await eventually(
                _ok(lambda: load.ok_ops(free) >= during + 30), timeout=30, what="writes elsewhere"
            )
            mark = time.monotonic()
            await eventually(
                _ok(lambda: all(load.inflight.get(s, -1) > mark for s in sticky)),
                timeout=15,
                what="requests to the paused leader sent after writes elsewhere",
            )
        finally:
            os.kill(pid, signal.SIGCONT)
        after = load.ok_ops(sticky)
        await eventually(
            _ok(lambda: load.ok_ops(sticky) >= after + 20), timeout=30, what="traffic after"
        )
    finally:
        load.stop.set()
        await asyncio.wait_for(runner, 20)
    assert new != victim
    verdict = check(load.recorder.ops, budget=2_000_000)
    assert verdict.ok, verdict.detail[-6000:]
    reads = [o for o in load.recorder.ops if o.kind == "read" and o.outcome == "ok"]
    assert len(reads) >= 30


def _ok(cond: Any) -> Any:
    async def probe() -> bool:
        return bool(cond())

    return probe


async def _new_leader(url: str, victim: str) -> str | None:
    leader = await _leader_seen_by(url)
    return leader if leader not in (None, victim) else None
