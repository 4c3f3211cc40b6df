"""/healthz of a node whose real shared Raft ticker is stuck or gone.

In-process on purpose: a stuck ticker cannot be produced from outside a node process without
stopping its HTTP side too (SIGSTOP freezes both). Here a real GroupManager (real ticker thread,
real LevelDB replica) runs a callback that blocks, exactly like a hung callback would in
production, and the real HTTP app is asked over a real socket.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import prometheus_client
import pytest
from aiohttp.test_utils import TestServer
from kvnode.http.app import make_app
from kvnode.raft.groups import GroupManager
from kvnode.service.forward import Forwarder
from kvnode.service.node import NodeService
from kvnode.settings import NodeSettings
from kvnode.storage.leveldb import LevelDBStore

from tests.integration.raft_trio import FAST, free_loopback, until

HTTP_PORT = 21950
STALL_S = 2.5


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[tuple[GroupManager, str]]:
    host = free_loopback([HTTP_PORT, HTTP_PORT + 1])
    groups = GroupManager(data_dir=str(tmp_path), tuning=FAST, open_store=LevelDBStore.open)
    groups.start()
    groups.open_replica(0, self_addr=f"{host}:{HTTP_PORT + 1}", peers=[])
    settings = NodeSettings(node_id="n1", data_dir=str(tmp_path), ticker_stall_s=STALL_S)
    service = NodeService(settings=settings, groups=groups, forwarder=Forwarder(None))  # type: ignore[arg-type]
    app = make_app(service, registry=prometheus_client.CollectorRegistry())
    server = TestServer(app, host=host, port=HTTP_PORT)
    await server.start_server()
    try:
        yield groups, f"http://{host}:{HTTP_PORT}/healthz"
    finally:
        await server.close()
        if groups.ticker.alive:
            await asyncio.to_thread(groups.stop)


async def probe(url: str) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as s, s.get(url, timeout=aiohttp.ClientTimeout(3)) as r:
        return r.status, await r.json()


async def test_healthz_fails_while_the_ticker_is_stuck_and_recovers(
    node: tuple[GroupManager, str],
) -> None:
    groups, url = node
    assert (await probe(url))[0] == 200
    release = threading.Event()
    blocked = threading.Thread(
        target=lambda: groups.ticker.call(lambda: release.wait(30), timeout=40), daemon=True
    )
    blocked.start()
    try:
        # Healthy within the bound, failing once the stall exceeds it (bounded wait).
        _status, body = await until(
            lambda: _failing(url), timeout=STALL_S + 5, what="/healthz answering 503"
        )
        assert body["reason"] == "ticker_stalled"
        assert body["code"] == "unavailable"
        assert float(body["ticker_lag_s"]) > STALL_S  # type: ignore[arg-type]
    finally:
        release.set()
        blocked.join(10)
    await until(lambda: _ok(url), timeout=5, what="/healthz answering 200 again")


async def test_healthz_fails_when_the_ticker_is_gone(node: tuple[GroupManager, str]) -> None:
    groups, url = node
    await asyncio.to_thread(groups.stop)
    status, body = await probe(url)
    assert status == 503
    assert body["reason"] == "ticker_dead"


async def _failing(url: str) -> tuple[int, dict[str, object]] | None:
    status, body = await probe(url)
    return (status, body) if status == 503 else None


async def _ok(url: str) -> bool:
    return (await probe(url))[0] == 200
