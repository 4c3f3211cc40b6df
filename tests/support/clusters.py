"""Real multi-process clusters for tests and benchmarks, and the bounded waits they share.

``Clusters`` creates ``LocalCluster``s each on its own claimed loopback address
(``tests.support.addresses``) and tears them down so that nothing survives: every node process
of each cluster's state directory is SIGKILLed with its process group — found from the pid
files and from a ``/proc`` scan, so nodes started by another process (a ``ringkv local scale``
that was itself killed) are included — then the address is released.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from kvnode.client import Client
from kvnode.core import errors
from kvnode.core.model import NodeInfo, PartitionMap
from kvnode.local import LocalCluster
from kvnode.rebalance.http_admin import HttpNodeAdmin

from tests.support.addresses import Claim, claim_address

log = logging.getLogger(__name__)

# Short timeouts keep failover quick; the defaults are for production.
FAST_RAFT = {
    "KVNODE_HEARTBEAT_S": "0.1",
    "KVNODE_ELECTION_MIN_S": "0.8",
    "KVNODE_ELECTION_MAX_S": "1.6",
    "KVNODE_LEADER_FALLBACK_S": "1.5",
    "KVNODE_LOG_LEVEL": "INFO",
}


class ClusterHandle:
    """A running LocalCluster plus helpers the tests share."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster

    @property
    def endpoints(self) -> list[str]:
        return self.cluster.endpoints

    def client(self, **kw: Any) -> Client:
        return Client(self.endpoints, **kw)

    async def wait_ready(self, timeout: float = 60.0, nodes: list[str] | None = None) -> dict:
        return await self.cluster.wait_ready(timeout=timeout, nodes=nodes)

    async def leader_of(self, partition: int) -> str:
        info = await self.wait_ready()
        leader = info["leaders"][str(partition)]
        assert leader is not None
        return str(leader)


class Clusters:
    """Makes clusters under ``root`` and guarantees none of their processes outlives
    ``teardown``."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.made: list[tuple[LocalCluster, Claim]] = []

    def create(
        self,
        *,
        nodes: int = 3,
        partitions: int = 8,
        replication: int = 3,
        env: dict[str, str] | None = None,
        start: bool = True,
    ) -> LocalCluster:
        claim = claim_address(partitions=partitions)
        try:
            cluster = LocalCluster.create(
                os.path.join(self.root, f"cluster{len(self.made)}"),
                nodes=nodes,
                partitions=partitions,
                replication=replication,
                host=claim.host,
                base_port=claim.base_port,
                env={**FAST_RAFT, **(env or {})},
            )
        except BaseException:
            claim.release()
            raise
        self.made.append((cluster, claim))
        if start:
            cluster.start_all()
        return cluster

    def teardown(self, *, show_logs: bool = False) -> list[str]:
        """Kill every node process of every cluster made here; return what was killed
        (``pid cmdline`` lines). Raises if any process survives SIGKILL."""
        killed: list[str] = []
        problems: list[str] = []
        for cluster, claim in self.made:
            if show_logs:
                log.error("node logs of %s:\n%s", cluster.base_dir, cluster.logs_report(lines=60))
            try:
                killed += [f"{p.pid} {p.cmdline}" for p in cluster.kill_everything()]
            except RuntimeError as exc:
                problems.append(str(exc))
            finally:
                claim.release()
        self.made.clear()
        if problems:
            raise RuntimeError("; ".join(problems))
        return killed


async def gather_bounded(coros: list, limit: int) -> list:
    sem = asyncio.Semaphore(limit)

    async def run(c: Awaitable[Any]) -> Any:
        async with sem:
            return await c

    return await asyncio.gather(*(run(c) for c in coros), return_exceptions=True)


async def eventually(
    fn: Callable[[], Awaitable[Any]], *, timeout: float, what: str, interval: float = 0.1
) -> Any:
    """Await ``fn()`` until it returns something truthy (KvErrors count as "not yet"); fail
    with the last answer after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = await fn()
            if last:
                return last
        except errors.KvError as exc:
            last = exc
        await asyncio.sleep(interval)
    raise AssertionError(f"{what} not reached within {timeout}s; last: {last!r}")


async def partition_leader(
    admin: HttpNodeAdmin, pmap: PartitionMap, p: int, *, besides: str | None = None
) -> str | None:
    """The leader of partition ``p`` as its replicas see it now (not ``besides``), or None."""
    for n in pmap.nodes:
        if n.node_id != besides:
            st = await admin.replica_state(n, p)
            if st.leader_id and st.leader_id != besides:
                return st.leader_id
    return None


async def on_leader(
    admin: HttpNodeAdmin,
    pmap: PartitionMap,
    p: int,
    call: Callable[[NodeInfo], Awaitable[Any]],
    what: str,
    *,
    besides: str | None = None,
    timeout: float = 30.0,
) -> Any:
    """``call(leader)`` on whoever leads ``p`` now. Leadership may move between two admin calls
    (an election on a busy machine, housekeeping's hand-off to the preferred replica right after
    a map or membership change), so the call must be idempotent: a NotLeader (any KvError)
    means "find the leader and ask again", within ``timeout``."""

    async def attempt() -> tuple[Any] | None:
        lid = await partition_leader(admin, pmap, p, besides=besides)
        if lid is None:
            return None
        return (await call(pmap.node(lid)),)

    return (await eventually(attempt, timeout=timeout, what=f"{what} on the leader of {p}"))[0]
