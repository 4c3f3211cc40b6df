"""The watch routes (``kvnode.http.watch``) and the client's ``Watcher`` against them, in one
process: real aiohttp server and client, real ``WatchService`` over real ``ChangeHistory``
objects (the fake is only the node's Raft groups, replaced by histories fed directly)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

import prometheus_client
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from kvnode.client.watch import Watcher, parse_sse
from kvnode.core import errors
from kvnode.core.ops import Limits
from kvnode.http import watch as watch_http
from kvnode.http.app import make_app
from kvnode.watch.history import HistoryLimits
from kvnode.watch.model import Event

from tests.support.clusters import eventually
from tests.unit.http.fake_service import FakeService
from tests.unit.test_watch_service import Histories, service


def test_sse_round_trip_and_keepalive_comments() -> None:
    raw = watch_http.sse(Event("ready", "w1.1.0")) + b": keep-alive\n\n"
    buf = bytearray(raw + watch_http.sse(Event("end", "w1.1.5", reason="duration", message="m")))
    buf += b"event: change\ndata: {"  # incomplete: stays in the buffer
    got = parse_sse(buf)
    assert [k for k, _ in got] == ["ready", "end"]
    assert buf == b"event: change\ndata: {"


@pytest.fixture
async def node() -> Any:
    hist = Histories(HistoryLimits(max_entries=20))
    registry = prometheus_client.CollectorRegistry()
    svc = service(hist, registry)
    app = make_app(FakeService(), registry=registry, watches=svc)
    server = TestServer(app)
    await server.start_server()
    yield hist, svc, str(server.make_url("")).rstrip("/"), server
    await svc.stop()
    await server.close()


async def test_http_errors_are_json_with_codes(node) -> None:
    hist, _, url, server = node
    for i in range(30):
        hist.put(0, f"k{i}")
    client = server.app  # noqa: F841  (the app is served; plain requests below)
    import aiohttp

    async with aiohttp.ClientSession() as s:
        async with s.get(url + "/v1/watch", params={"from_version": "1"}) as r:
            assert r.status == 410
            assert (await r.json())["code"] == "compacted"
        async with s.get(url + "/v1/watch", params={"from_version": "nope"}) as r:
            assert r.status == 400
            assert (await r.json())["field"] == "from_version"
        async with s.get(url + "/v1/watch", params={"duration_s": "0"}) as r:
            assert r.status == 400
            assert (await r.json())["field"] == "duration_s"
        async with s.get(url + "/v1/watch", params={"prefix": "x" * 2000}) as r:
            assert r.status == 413
        async with s.get(url + "/v1/internal/watch", params={"partition": "0", "after": "x"}) as r:
            assert r.status == 400
            assert (await r.json())["field"] == "after"
        async with s.get(url + "/v1/internal/watch", params={"partition": "0", "after": "1"}) as r:
            assert r.status == 410
        async with s.get(url + "/v1/internal/watch", params={"partition": "0", "after": "29"}) as r:
            body = await r.json()
            assert [c["key"] for c in body["changes"]] == ["k29"]
            assert body["position"] == "30"


async def test_watcher_yields_each_change_once_across_server_side_endings(node) -> None:
    hist, svc, url, _ = node
    watcher = Watcher(lambda: [url], prefix="a/")
    got: list[str] = []

    async def consume() -> None:
        async for ev in watcher:
            got.append(ev.key)
            if len(got) == 9:
                return

    task = asyncio.create_task(consume())
    await eventually(lambda: _true(watcher.token is not None), timeout=10, what="connected")
    for i in range(9):
        hist.put(i % 3, f"a/{i}")
        if i in (2, 5):  # the server ends every stream; the watcher resumes from its token
            await eventually(lambda i=i: _true(len(got) > i), timeout=10, what=f"change {i}")
            await svc.stop()
    await asyncio.wait_for(task, 10)
    assert got == [f"a/{i}" for i in range(9)]
    assert watcher.reconnects >= 2
    await watcher.aclose()


async def test_watcher_raises_compacted_instead_of_skipping(node) -> None:
    hist, _, url, _ = node
    for i in range(30):
        hist.put(1, f"k{i}")
    with pytest.raises(errors.Compacted):
        await asyncio.wait_for(_drain(Watcher(lambda: [url], prefix="", from_token="1")), 10)


async def _true(value: bool) -> bool:
    return value


async def _drain(watcher: Watcher) -> None:
    async for _ in watcher:
        pass


async def _read_to_close(reader: asyncio.StreamReader) -> None:
    while await reader.read(1 << 20):
        pass


async def test_slow_consumer_is_cut_off_and_its_connection_closed() -> None:
    hist = Histories(HistoryLimits(max_entries=100_000, max_bytes=1 << 30))
    registry = prometheus_client.CollectorRegistry()
    svc = service(hist, registry, stall_s=0.5, buffer_bytes=64 * 1024)
    app = web.Application()
    watch_http.add_routes(app, svc, Limits())
    server = TestServer(app)
    await server.start_server()
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills sooner
        sock.connect((server.host, server.port))
        reader, writer = await asyncio.open_connection(sock=sock)
        writer.write(b"GET /v1/watch HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        await reader.readuntil(b"event: ready")
        async with asyncio.timeout(30):
            i = 0  # ~1 KB changes until the socket buffers are full and the stream stalls
            while registry.get_sample_value("ringkv_watch_active") != 0:
                hist.put(i % 3, f"k{i}", "x" * 1000)
                i += 1
                if i % 100 == 0:
                    await asyncio.sleep(0.01)
        assert registry.get_sample_value("ringkv_watch_cutoffs_total", {"reason": "slow_consumer"})
        # the server closed (or aborted) the connection: reading ends (EOF or reset) in time
        with contextlib.suppress(ConnectionError):
            await asyncio.wait_for(_read_to_close(reader), 10)
        writer.close()
    finally:
        await svc.stop()
        await server.close()
