"""Maintenance drain on real node processes: a drained node gives up every leadership within a
bound, stays leaderless over several housekeeping periods and across a restart (the flag is in
its data directory), and gets its preferred leaderships back once undrained."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import aiohttp
import pytest
from kvnode.rebalance.http_admin import HttpNodeAdmin
from kvnode.service.housekeeping import LEADER_BALANCE_INTERVAL_S

from tests.support.clusters import eventually

pytestmark = pytest.mark.integration
log = logging.getLogger(__name__)

PARTITIONS = 6


async def call(url: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    timeout = aiohttp.ClientTimeout(total=30)
    async with (
        aiohttp.ClientSession(timeout=timeout) as s,
        s.request(method, url + path, json=body, headers={"X-Ringkv-Timeout": "20"}) as r,
    ):
        return r.status, await r.json()


async def leaders(url: str) -> dict[int, str | None]:
    status, body = await call(url, "GET", "/v1/cluster")
    assert status == 200, body
    return {int(p): n for p, n in body["leaders"].items()}


async def stays_leaderless(url: str, node: str, *, seconds: float) -> None:
    """``node`` leads nothing during ``seconds`` (several housekeeping periods), sampled."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        status, body = await call(url, "GET", "/v1/admin/drain")
        assert status == 200
        assert body["drained"] is True
        assert body["leader_of"] == [], f"{node} leads {body['leader_of']} while drained"
        await asyncio.sleep(0.25)


async def test_drain_moves_leaderships_off_and_keeps_them_off(make_cluster) -> None:
    h = make_cluster(nodes=3, partitions=PARTITIONS, replication=3)
    await h.wait_ready(timeout=60)
    c = h.cluster
    pmap = c.pmap
    node = pmap.nodes[0].node_id
    url = pmap.node(node).http_url
    other = pmap.nodes[1].http_url
    preferred = [p for p in range(PARTITIONS) if pmap.replicas[p][0] == node]
    assert preferred, "placement gives every node preferred leaderships"

    async def balanced() -> bool:
        ld = await leaders(other)
        return all(ld[p] == pmap.replicas[p][0] for p in range(PARTITIONS))

    await eventually(balanced, timeout=40, what="preferred leaders in place")
    async with h.client() as client:
        for i in range(50):
            await client.put(f"k{i}", f"v{i}")

    started = time.monotonic()
    admin = HttpNodeAdmin(timeout_s=20)
    try:
        report = await admin.set_drained(pmap.node(node), True)
    finally:
        await admin.close()
    assert report["drained"] is True
    assert report["complete"] is True, report
    assert report["leader_of"] == []
    drain_s = time.monotonic() - started
    log.info("drain of %s (led %s) took %.2fs", node, preferred, drain_s)
    assert drain_s < 15, f"drain took {drain_s:.1f}s"
    await stays_leaderless(url, node, seconds=3 * LEADER_BALANCE_INTERVAL_S + 1)
    await eventually(
        lambda: _drained_in_cluster(other, node), timeout=10, what="drained in /v1/cluster"
    )
    ld = await leaders(other)
    assert all(ld[p] not in (None, node) for p in range(PARTITIONS)), ld
    status, metrics = await _text(url + "/metrics")
    assert f'ringkv_node_drained{{node="{node}"}} 1.0' in metrics
    async with h.client() as client:
        assert (await client.get("k7")).value == "v7"

    # The flag survives a restart: the node comes back and still leads nothing.
    c.stop_node(node)
    c.start_node(node)
    await h.wait_ready(timeout=60)
    await stays_leaderless(url, node, seconds=3 * LEADER_BALANCE_INTERVAL_S + 1)

    status, report = await call(url, "PUT", "/v1/admin/drain", {"drained": False})
    assert status == 200
    assert report["drained"] is False

    async def back() -> bool:
        ld = await leaders(other)
        return all(ld[p] == node for p in preferred)

    started = time.monotonic()
    await eventually(back, timeout=30, what=f"{node} leading its preferred {preferred} again")
    log.info("leaderships back %.2fs after undrain", time.monotonic() - started)


async def _text(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        return r.status, await r.text()


async def _drained_in_cluster(url: str, node: str) -> bool:
    status, body = await call(url, "GET", "/v1/cluster")
    return status == 200 and body["nodes"][node]["drained"] is True


async def test_a_stopping_node_hands_its_leaderships_away_first(make_cluster) -> None:
    """SIGTERM (a pod deleted) hands every leadership away before the process exits, so the
    others lead at once instead of after an election timeout; a restart is not drained."""
    h = make_cluster(nodes=3, partitions=PARTITIONS, replication=3)
    await h.wait_ready(timeout=60)
    c = h.cluster
    pmap = c.pmap
    node = pmap.nodes[0].node_id
    other = pmap.nodes[1].http_url

    async def leads() -> list[int] | None:
        led = [p for p, n in (await leaders(pmap.node(node).http_url)).items() if n == node]
        return led or None

    await eventually(leads, timeout=30, what=f"{node} leading some partition")
    started = time.monotonic()
    await asyncio.to_thread(c.stop_node, node)
    took = time.monotonic() - started
    after = await leaders(other)
    log.info("stop with hand-off took %.2fs; leaders right after: %s", took, after)
    assert all(n is not None and n != node for n in after.values()), after
    c.start_node(node)
    await h.wait_ready(timeout=60)
    status, body = await call(pmap.node(node).http_url, "GET", "/v1/admin/drain")
    assert status == 200
    assert body["drained"] is False
