"""``SyncClient`` end to end through the real HTTP layer (over the dict-backed FakeService)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import prometheus_client
import pytest
from aiohttp import web
from kvnode.client import BatchOp, SyncClient
from kvnode.core import errors
from kvnode.core.model import NodeInfo, PartitionMap
from kvnode.http.app import make_app

from tests.unit.http.fake_service import PARTITIONS, FakeService


@pytest.fixture
def node() -> Iterator[tuple[FakeService, str]]:
    """A real aiohttp server in its own loop thread (the sync client blocks its caller)."""
    service = FakeService()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    runner = web.AppRunner(make_app(service, registry=prometheus_client.CollectorRegistry()))

    async def start() -> int:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return runner.addresses[0][1]

    port = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    nodes = [NodeInfo(f"n{i}", "127.0.0.1", port, 9000) for i in range(3)]
    replicas = [[f"n{(p + i) % 3}" for i in range(3)] for p in range(PARTITIONS)]
    service.pmap = PartitionMap.build(epoch=1, nodes=nodes, replicas=replicas, replication=3)
    yield service, f"http://127.0.0.1:{port}"
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


@pytest.mark.parametrize("direct", [True, False])
def test_sync_client_round_trip(node: tuple[FakeService, str], direct: bool) -> None:
    service, url = node
    with SyncClient([url], timeout=3, direct=direct) as c:
        v1 = c.put("a/1", "x", ttl=10)
        entry = c.get("a/1", consistency="eventual")
        assert entry is not None
        assert (entry.value, entry.version) == ("x", v1)
        assert entry.expires_at_ms == service.now_ms + 10_000
        v2 = c.cas("a/1", "y", if_version=v1)
        assert v2 > v1
        with pytest.raises(errors.PreconditionFailed):
            c.cas("a/1", "z", if_value="x")
        result = c.batch([BatchOp.put("a/2", "2"), BatchOp.put("a/3", "3")])
        assert result.applied
        assert [e.key for e in c.scan("a/", page_size=2)] == ["a/1", "a/2", "a/3"]
        assert c.keys("a/", limit=1).next_cursor == "a/1"
        assert c.delete("a/1") is True
        assert c.delete("a/1") is False
        assert c.get("a/1") is None
        assert c.cluster()["map"]["epoch"] == 1
    c.close()  # idempotent


def test_sync_client_surfaces_errors(node: tuple[FakeService, str]) -> None:
    _, url = node
    with SyncClient([url], timeout=3) as c, pytest.raises(errors.InvalidArgument):
        c.put("", "x")
