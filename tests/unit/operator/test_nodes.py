"""``HttpNodeApi.read_map`` over real HTTP: a map, "no map yet" (reachable), nothing listening."""

from __future__ import annotations

import random
import socket
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from kvnode.core import errors
from kvnode.core.model import NodeInfo
from kvoperator.nodes import HttpNodeApi

from tests.unit.operator.builders import cluster_map

pytestmark = pytest.mark.timeout(20)


def node_at(server: TestServer) -> NodeInfo:
    return NodeInfo("demo-0", str(server.host), int(server.port or 0), 17000)


def free_port() -> int:
    """A free port below the ephemeral range (the project never listens in 32768-60999)."""
    for _ in range(200):
        port = random.randrange(21000, 30000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port in 21000-29999")


async def serve(aiohttp_server: Any, answer: web.Response) -> TestServer:
    async def cluster(_: web.Request) -> web.Response:
        return answer

    app = web.Application()
    app.router.add_get("/v1/cluster", cluster)
    server: TestServer = await aiohttp_server(app, host="127.0.0.1", port=free_port())
    return server


async def test_a_node_with_a_map(aiohttp_server: Any) -> None:
    pmap = cluster_map(range(3), epoch=7, partitions=4)
    server = await serve(aiohttp_server, web.json_response({"epoch": 7, "map": pmap.to_dict()}))
    api = HttpNodeApi(timeout_s=2)
    try:
        report = await api.read_map(node_at(server))
    finally:
        await api.close()
    assert report.reachable
    assert report.pmap == pmap
    assert report.leaders is None  # this answer did not tell leaders


async def test_the_leaders_a_node_knows(aiohttp_server: Any) -> None:
    pmap = cluster_map(range(3), epoch=7, partitions=4)
    leaders = {"0": "demo-0", "1": None, "2": "demo-2", "3": 5}  # 5: garbage -> unknown
    body = {"epoch": 7, "map": pmap.to_dict(), "leaders": leaders}
    server = await serve(aiohttp_server, web.json_response(body))
    api = HttpNodeApi(timeout_s=2)
    try:
        report = await api.read_map(node_at(server))
    finally:
        await api.close()
    assert report.leaders == ("demo-0", None, "demo-2", None)


async def test_a_node_without_a_map_is_reachable(aiohttp_server: Any) -> None:
    # what kvnode.service.node answers before its first map (kvnode.http maps it to 503)
    body = errors.Unavailable("this node has no partition map yet", retry_after=1).to_dict()
    server = await serve(aiohttp_server, web.json_response(body, status=503))
    api = HttpNodeApi(timeout_s=2)
    try:
        report = await api.read_map(node_at(server))
    finally:
        await api.close()
    assert report.reachable
    assert report.pmap is None


async def test_a_node_answering_another_error_is_not_taken_for_an_empty_one(
    aiohttp_server: Any,
) -> None:
    body = errors.Unavailable("overloaded ticker", retry_after=1).to_dict()
    server = await serve(aiohttp_server, web.json_response(body, status=503))
    api = HttpNodeApi(timeout_s=2)
    try:
        report = await api.read_map(node_at(server))
    finally:
        await api.close()
    assert not report.reachable


async def test_nothing_listening_is_unreachable(aiohttp_server: Any) -> None:
    server = await serve(aiohttp_server, web.json_response({}))
    node = node_at(server)
    await server.close()
    api = HttpNodeApi(timeout_s=2)
    try:
        report = await api.read_map(node)
    finally:
        await api.close()
    assert not report.reachable


async def test_drain_flag_and_lost_partitions_are_read(aiohttp_server: Any) -> None:
    pmap = cluster_map(range(3), epoch=7, partitions=4)
    body = {"epoch": 7, "map": pmap.to_dict(), "nodes": {"demo-0": {"drained": True}}}

    async def cluster(_: web.Request) -> web.Response:
        return web.json_response(body)

    async def readyz(_: web.Request) -> web.Response:
        reason = {"ready": False, "reason": "partitions [1, 3] need a reseed"}
        return web.json_response({**reason, "needs_reseed": [3, 1]}, status=503)

    app = web.Application()
    app.router.add_get("/v1/cluster", cluster)
    app.router.add_get("/readyz", readyz)
    server: TestServer = await aiohttp_server(app, host="127.0.0.1", port=free_port())
    api = HttpNodeApi(timeout_s=2)
    try:
        report = await api.read_map(node_at(server))
        lost = await api.needs_reseed(node_at(server))
        gone = await api.needs_reseed(NodeInfo("demo-1", "127.0.0.1", free_port(), 17000))
    finally:
        await api.close()
    assert report.drained is True
    assert lost == (1, 3)
    assert gone is None
