"""Small aiohttp servers that play ringkv nodes with scripted answers, to test the client's
routing and retry logic (not a model of the node: each answer is whatever the test scripts)."""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer
from kvnode.core.hashing import partition_of
from kvnode.core.model import NodeInfo, PartitionMap

PARTITIONS = 4
HANG = "hang"  # script item: never answer (until the client gives up)
DROP = "drop"  # script item: close the connection without an answer

Reply = tuple[int, dict[str, Any]] | str


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Node:
    node_id: str
    script: deque[Reply] = field(default_factory=deque)
    seen: list[Seen] = field(default_factory=list)
    server: TestServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.port}"

    def data_requests(self) -> list[Seen]:
        return [s for s in self.seen if s.path != "/v1/cluster"]


@dataclass
class Cluster:
    nodes: dict[str, Node]
    pmap: PartitionMap | None = None
    leaders: dict[str, str | None] = field(default_factory=dict)
    cluster_fails: set[str] = field(default_factory=set)

    def node(self, node_id: str) -> Node:
        return self.nodes[node_id]

    def leader_of(self, key: str) -> Node:
        assert self.pmap is not None
        p = partition_of(key, self.pmap.partitions)
        leader = self.leaders.get(str(p)) or self.pmap.replicas[p][0]
        return self.nodes[leader]

    def make_map(self, *, epoch: int, rotate: int = 0) -> PartitionMap:
        infos = [
            NodeInfo(n.node_id, "127.0.0.1", n.server.port if n.server else 0, 9000)
            for n in self.nodes.values()
        ]
        ids = sorted(self.nodes)
        replicas = [[ids[(p + rotate + i) % len(ids)] for i in range(3)] for p in range(PARTITIONS)]
        return PartitionMap.build(epoch=epoch, nodes=infos, replicas=replicas, replication=3)

    def install(self, pmap: PartitionMap) -> None:
        self.pmap = pmap
        self.leaders = {str(p): pmap.replicas[p][0] for p in range(pmap.partitions)}

    def all_data_requests(self) -> list[tuple[str, Seen]]:
        return [(n.node_id, s) for n in self.nodes.values() for s in n.data_requests()]


def default_reply(seen: Seen) -> tuple[int, dict[str, Any]]:
    """A plausible success for each route, so tests only script what matters."""
    path = seen.path.split("?", 1)[0]
    if path.startswith("/v1/kv/"):
        key = path[len("/v1/kv/") :]
        if seen.method == "GET":
            return 200, {"key": key, "value": "v", "version": 7, "expires_at_ms": None}
        if seen.method == "PUT":
            return 200, {"key": key, "version": 8}
        return 200, {"key": key, "deleted": True, "version": 7}
    if path == "/v1/batch":
        ops = seen.body["ops"]
        results = [
            {"index": i, "key": op["key"], "applied": True, "version": 9, "existed": False}
            for i, op in enumerate(ops)
        ]
        return 200, {"applied": True, "results": results}
    if path == "/v1/kv":
        return 200, {"items": [], "next_cursor": None}
    return 404, {"code": "no_route", "message": path}


def node_app(cluster: Cluster, node: Node) -> web.Application:
    async def handle(request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        seen = Seen(
            request.method,
            request.raw_path,
            dict(request.headers),
            json.loads(raw) if raw else None,
        )
        node.seen.append(seen)
        if request.path == "/v1/cluster":
            return cluster_reply(cluster, node)
        reply = node.script.popleft() if node.script else default_reply(seen)
        if reply == HANG:
            await asyncio.sleep(3600)
        if reply == DROP:
            assert request.transport is not None
            request.transport.abort()
            return web.Response()
        assert isinstance(reply, tuple)
        status, body = reply
        return web.json_response(body, status=status, headers={"X-Ringkv-Node": node.node_id})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def cluster_reply(cluster: Cluster, node: Node) -> web.Response:
    if node.node_id in cluster.cluster_fails:
        return web.json_response({"code": "unavailable", "message": "starting"}, status=503)
    assert cluster.pmap is not None
    return web.json_response(
        {
            "node_id": node.node_id,
            "epoch": cluster.pmap.epoch,
            "map": cluster.pmap.to_dict(),
            "leaders": cluster.leaders,
            "nodes": {},
        }
    )


ServerFactory = Callable[[web.Application], Awaitable[TestServer]]


async def start_cluster(aiohttp_server: ServerFactory, *, n: int = 3) -> Cluster:
    cluster = Cluster({f"n{i}": Node(f"n{i}") for i in range(n)})
    for node in cluster.nodes.values():
        node.server = await aiohttp_server(node_app(cluster, node))
    cluster.install(cluster.make_map(epoch=1))
    return cluster


def key_in_partition(p: int, *, prefix: str = "k") -> str:
    i = 0
    while partition_of(f"{prefix}{i}", PARTITIONS) != p:
        i += 1
    return f"{prefix}{i}"
