"""Live rebalancing on real node processes: scale out and in under client load, executor and
receiving-node crashes, and the invariants afterwards (no lost acknowledged write, equal
digests on every replica, no data left on nodes that no longer own it, a balanced map)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
from kvnode.core.model import PartitionMap
from kvnode.core.placement import leader_load, load
from kvnode.local import REBALANCE_FILE, LocalCluster, scale_cluster
from kvnode.rebalance.executor import Options, RebalanceProgress
from kvnode.rebalance.http_admin import HttpNodeAdmin

from tests.support.clusters import eventually
from tests.support.workload import Workload

pytestmark = pytest.mark.integration

FAST = Options(max_concurrent=2, step_timeout_s=90.0, poll_interval_s=0.1)


async def preload(h: Any, count: int, prefix: str) -> None:
    async with h.client() as client:
        for i in range(count):
            await client.put(f"{prefix}{i}", f"v{i}")


async def assert_preloaded(h: Any, count: int, prefix: str) -> None:
    async with h.client() as client:
        for i in range(count):
            got = await client.get(f"{prefix}{i}")
            assert got is not None, i
            assert got.value == f"v{i}"


def partition_dirs(base_dir: str) -> dict[str, list[int]]:
    """Partition directories on disk per node directory (``node-*``) of a local cluster."""
    out = {}
    for node_id in os.listdir(base_dir):
        path = os.path.join(base_dir, node_id)
        if node_id.startswith("node-") and os.path.isdir(path):
            names = os.listdir(path)
            out[node_id] = sorted(int(d[1:]) for d in names if d[:1] == "p" and d[1:].isdigit())
    return out


async def check_invariants(cluster: LocalCluster, pmap: PartitionMap) -> None:
    """Digests of all replicas agree at one log index; every node holds exactly the partitions
    the map gives it (drained nodes hold none); replicas and leaders are balanced."""
    admin = HttpNodeAdmin(timeout_s=10)
    try:
        for p in range(pmap.partitions):
            members = pmap.replicas[p]

            async def digests(p: int = p, members: tuple[str, ...] = members) -> Any:
                states = [await admin.replica_state(pmap.node(m), p) for m in members]
                leader = next((s.leader_id for s in states if s.role == "leader"), None)
                if leader is None:
                    return None
                index = await admin.start_digest(pmap.node(leader), p)
                for _ in range(100):
                    got = [await admin.digest(pmap.node(m), p, index) for m in members]
                    if all(got):
                        return got
                    await asyncio.sleep(0.1)
                return None

            got = await eventually(digests, timeout=30, what=f"digests of partition {p}")
            assert len(set(got)) == 1, f"partition {p}: replicas disagree: {got}"
            for m in members:
                state = await admin.replica_state(pmap.node(m), p)
                assert state.hosted, (p, m)
                assert set(state.members) == set(members), (p, m, state.members)
    finally:
        await admin.close()
    for node_id, held in sorted(partition_dirs(cluster.base_dir).items()):
        owned = sorted(pmap.partitions_of(node_id)) if pmap.has_node(node_id) else []
        assert held == owned, f"{node_id} holds partitions {held}, owns {owned}"
    counts = load(pmap.replicas)
    assert max(counts.values()) - min(counts.values()) <= 1, counts
    leaders = leader_load(pmap.replicas)
    assert max(leaders.values()) - min(leaders.values()) <= 1, leaders


async def test_scale_3_to_5_to_3_under_load(make_cluster) -> None:
    h = make_cluster(nodes=3, partitions=8, reserve_nodes=5)
    await h.wait_ready()
    c = h.cluster
    await preload(h, 300, "pre-")
    progress: list[RebalanceProgress] = []
    async with Workload(c.endpoints, writers=3, readers=3) as wl:
        await asyncio.sleep(3)
        up = await scale_cluster(c, 5, options=FAST, on_progress=progress.append)
        assert up["status"] == "done"
        assert len(c.pmap.nodes) == 5
        await asyncio.sleep(1)
        down = await scale_cluster(c, 3, options=FAST, on_progress=progress.append)
        assert down["status"] == "done"
        await asyncio.sleep(2)
    assert sorted(down["stopped"]) == ["node-3", "node-4"]
    assert up["bytes_moved"] > 0
    assert progress[-1].partitions_done == progress[-1].partitions_total
    assert not wl.failures, wl.failures[:20]
    assert len(wl.acked) >= 3 * 40
    pmap = c.pmap
    assert [n.node_id for n in pmap.nodes] == ["node-0", "node-1", "node-2"]
    async with h.client() as client:
        assert await wl.lost_writes(client) == []
    await assert_preloaded(h, 300, "pre-")
    await check_invariants(c, pmap)


def _run_scale_cli(base_dir: str, nodes: int) -> subprocess.Popen[bytes]:
    code = "from kvnode.cli import main; main()"
    return subprocess.Popen(
        [sys.executable, "-c", code, "local", "scale", str(nodes), "--dir", base_dir, "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def _steps_done(base_dir: str) -> int:
    try:
        with open(os.path.join(base_dir, REBALANCE_FILE), encoding="utf-8") as f:
            state = json.load(f)
    except (FileNotFoundError, ValueError):
        return 0
    return sum(int(n) for n in state["progress"]["done"].values())


async def test_executor_killed_mid_plan_resumes(make_cluster) -> None:
    h = make_cluster(nodes=3, partitions=8, reserve_nodes=4)
    await h.wait_ready()
    c = h.cluster
    await preload(h, 400, "k")
    proc = _run_scale_cli(c.base_dir, 4)
    try:
        deadline = time.monotonic() + 120
        while _steps_done(c.base_dir) < 6:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the executor made no progress"
            await asyncio.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        killed_at = _steps_done(c.base_dir)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    # Resume in this process, on a fresh view of the cluster (the CLI started node-3).
    resumed = LocalCluster.load(c.base_dir)
    try:
        result = await scale_cluster(resumed, 4, options=FAST)
        assert result["status"] == "done"
        assert result["steps"] > killed_at
        await assert_preloaded(h, 400, "k")
        await check_invariants(resumed, resumed.pmap)
    finally:
        resumed.stop_all(kill=True)


async def test_receiving_node_killed_mid_plan_recovers(make_cluster) -> None:
    h = make_cluster(nodes=3, partitions=8, reserve_nodes=4)
    await h.wait_ready()
    c = h.cluster
    await preload(h, 400, "k")
    killed = asyncio.Event()

    def on_progress(p: RebalanceProgress) -> None:
        # Kill the joining node once, right after it received its first partitions.
        if not killed.is_set() and p.steps_done >= 3 and c.is_running("node-3"):
            c.kill_node("node-3")
            killed.set()

    async def restart_later() -> None:
        await asyncio.wait_for(killed.wait(), timeout=120)
        await asyncio.sleep(2.0)
        c.start_node("node-3")

    restarter = asyncio.create_task(restart_later())
    try:
        result = await scale_cluster(c, 4, options=FAST, on_progress=on_progress)
    finally:
        if not killed.is_set():
            restarter.cancel()
    await restarter
    assert killed.is_set(), "node-3 was never killed"
    assert result["status"] == "done"
    await assert_preloaded(h, 400, "k")
    await check_invariants(c, c.pmap)
