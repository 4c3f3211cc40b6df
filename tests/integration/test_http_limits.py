"""Abusive connections against a real node: slow or idle clients, a connection flood and
oversized headers are bounded, answered as JSON errors where there is a request to answer,
and never stop the node from serving everyone else.

The idle timeout is shortened (``KVNODE_HTTP_IDLE_TIMEOUT_S=2``) so the test is quick; the
default is 75 s (``NodeSettings.http_idle_timeout_s``).
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from kvnode.client import NodeHttp
from kvnode.settings import NodeSettings

pytestmark = pytest.mark.integration

IDLE_S = 2.0
FLOOD = 400


async def closed_after(reader: asyncio.StreamReader, *, limit: float) -> float | None:
    """Seconds until the server closed the connection (None: still open after ``limit``)."""
    t0 = time.monotonic()
    try:
        data = await asyncio.wait_for(reader.read(4096), timeout=limit)
    except (TimeoutError, ConnectionError):
        return None
    return time.monotonic() - t0 if data == b"" else None


async def answer(host: str, port: int, raw: bytes) -> tuple[int, dict]:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(raw)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


@pytest.fixture
async def node(make_cluster):
    handle = make_cluster(
        nodes=1, partitions=2, replication=1, env={"KVNODE_HTTP_IDLE_TIMEOUT_S": str(IDLE_S)}
    )
    await handle.wait_ready(timeout=60)
    return handle.cluster


async def healthz_s(url: str) -> float:
    http = NodeHttp()
    t0 = time.monotonic()
    try:
        await http.call(url, "GET", "/healthz", timeout=5.0)
    finally:
        await http.close()
    return time.monotonic() - t0


@pytest.mark.timeout(90)
async def test_slow_and_idle_connections_are_closed_and_others_served(node) -> None:
    info = node.pmap.nodes[0]
    # slowloris: a request line, then one header line every 0.3 s, never the blank line
    r1, w1 = await asyncio.open_connection(info.host, info.http_port)
    w1.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")

    async def drip() -> None:
        for i in range(100):
            await asyncio.sleep(0.3)
            if w1.is_closing():
                return
            w1.write(b"X-%d: y\r\n" % i)

    dripping = asyncio.create_task(drip())
    r2, w2 = await asyncio.open_connection(info.host, info.http_port)  # sends nothing at all
    assert await healthz_s(info.http_url) < 2.0  # meanwhile others are served
    slow, idle = await asyncio.gather(
        closed_after(r1, limit=IDLE_S + 8), closed_after(r2, limit=IDLE_S + 8)
    )
    dripping.cancel()
    w1.close()
    w2.close()
    assert slow is not None, "a header drip kept its connection open"
    assert idle is not None, "an idle connection stayed open"


@pytest.mark.timeout(90)
async def test_a_connection_flood_is_served_around_and_drained(node) -> None:
    info = node.pmap.nodes[0]
    conns = [await asyncio.open_connection(info.host, info.http_port) for _ in range(FLOOD)]
    try:
        assert await healthz_s(info.http_url) < 2.0
        closed = await asyncio.gather(*(closed_after(r, limit=IDLE_S + 15) for r, _ in conns))
    finally:
        for _, w in conns:
            w.close()
    still_open = sum(1 for c in closed if c is None)
    assert still_open == 0, f"{still_open} of {FLOOD} idle connections outlived the idle timeout"
    assert node.is_running("node-0")


@pytest.mark.timeout(60)
async def test_oversized_headers_get_json_errors_and_the_node_goes_on(node) -> None:
    info = node.pmap.nodes[0]
    big = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n"
    status, body = await answer(info.host, info.http_port, big)
    assert status in (400, 413, 431)
    assert "code" in body
    many = b"".join(b"X-%d: y\r\n" % i for i in range(5000))
    status, body = await answer(info.host, info.http_port, b"GET /healthz HTTP/1.1\r\n" + many)
    assert status == 400
    assert "header" in json.dumps(body).lower()
    assert await healthz_s(info.http_url) < 2.0


def test_the_idle_timeout_is_read_from_the_environment_and_checked() -> None:
    base = {"KVNODE_NODE_ID": "node-0", "KVNODE_DATA_DIR": "/tmp/x"}
    assert NodeSettings.from_env(base).http_idle_timeout_s == 75.0
    got = NodeSettings.from_env({**base, "KVNODE_HTTP_IDLE_TIMEOUT_S": "2.5"})
    assert got.http_idle_timeout_s == 2.5
    with pytest.raises(ValueError, match="http_idle_timeout_s"):
        NodeSettings.from_env({**base, "KVNODE_HTTP_IDLE_TIMEOUT_S": "0"})
