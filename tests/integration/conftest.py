"""Real multi-process clusters for integration tests.

Every cluster runs real ``python -m kvnode`` processes on 127.0.0.1 with real LevelDB files and
real Raft groups, on ports no other test uses; every process is killed at teardown and, when a
test fails, the nodes' logs are printed.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import time
from collections.abc import Iterator

import pytest
from kvnode.client import Client
from kvnode.core import errors
from kvnode.local import LocalCluster

# Short timeouts keep failover quick; the defaults are for production.
FAST_RAFT = {
    "KVNODE_HEARTBEAT_S": "0.1",
    "KVNODE_ELECTION_MIN_S": "0.8",
    "KVNODE_ELECTION_MAX_S": "1.6",
    "KVNODE_LEADER_FALLBACK_S": "1.5",
    "KVNODE_LOG_LEVEL": "INFO",
}

_port_blocks = itertools.count(0)


def _ports_free(ports: list[int]) -> bool:
    for port in ports:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def free_base_port(nodes: int, partitions: int) -> int:
    """A base port whose HTTP and Raft ports (see kvnode.local) are all free right now."""
    worker = os.getpid() % 7
    for _ in range(200):
        base = 21000 + 160 * ((next(_port_blocks) + worker * 20) % 60)
        ports = [base + i for i in range(nodes)]
        ports += [base + 10000 + 1000 * i + p for i in range(nodes) for p in range(partitions)]
        if _ports_free(ports):
            return base
    raise RuntimeError("no free port block for a test cluster")


class ClusterHandle:
    """A running LocalCluster plus helpers the tests share."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster

    @property
    def endpoints(self) -> list[str]:
        return self.cluster.endpoints

    def client(self, **kw: object) -> Client:
        return Client(self.endpoints, **kw)  # type: ignore[arg-type]

    async def wait_ready(self, timeout: float = 60.0, nodes: list[str] | None = None) -> dict:
        return await self.cluster.wait_ready(timeout=timeout, nodes=nodes)

    async def leader_of(self, partition: int) -> str:
        info = await self.wait_ready()
        leader = info["leaders"][str(partition)]
        assert leader is not None
        return str(leader)


@pytest.fixture
def make_cluster(tmp_path, request) -> Iterator:
    made: list[LocalCluster] = []

    def make(
        *,
        nodes: int = 3,
        partitions: int = 8,
        replication: int = 3,
        env: dict | None = None,
        reserve_nodes: int = 0,
    ) -> ClusterHandle:
        base = free_base_port(max(nodes, reserve_nodes), partitions)
        cluster = LocalCluster.create(
            str(tmp_path / f"cluster{len(made)}"),
            nodes=nodes,
            partitions=partitions,
            replication=replication,
            base_port=base,
            env={**FAST_RAFT, **(env or {})},
        )
        made.append(cluster)
        cluster.start_all()
        return ClusterHandle(cluster)

    yield make
    failed = getattr(request.node, "rep_call", None)
    for cluster in made:
        if failed is not None and failed.failed:
            print(cluster.logs_report(lines=60))
        cluster.stop_all(kill=True)


@pytest.fixture
async def cluster(make_cluster) -> ClusterHandle:
    handle = make_cluster()
    await handle.wait_ready(timeout=60)
    return handle


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


async def gather_bounded(coros: list, limit: int) -> list:
    sem = asyncio.Semaphore(limit)

    async def run(c):
        async with sem:
            return await c

    return await asyncio.gather(*(run(c) for c in coros), return_exceptions=True)


async def eventually(fn, *, timeout: float, what: str, interval: float = 0.1):
    """Await ``fn()`` until it returns something truthy (KvErrors count as "not yet"); fail
    with the last answer after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = await fn()
            if last:
                return last
        except errors.KvError as exc:
            last = exc
        await asyncio.sleep(interval)
    raise AssertionError(f"{what} not reached within {timeout}s; last: {last!r}")
