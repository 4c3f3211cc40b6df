"""Local cluster processes: a taken port stops a node at once with its address, nodes started
by a ``ringkv local`` command that was ``kill -9``'d are still found and killed by teardown,
and ``ringkv local status`` reports the epoch the running nodes are at."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from kvnode import local, localprocs
from kvnode.local import LocalCluster, NodeExited

from tests.support.addresses import claim_address
from tests.support.clusters import Clusters, eventually

pytestmark = pytest.mark.integration

CLI = "from kvnode.cli import main; main()"
TIMEOUT = aiohttp.ClientTimeout(5)


def ringkv(*args: str) -> subprocess.Popen[bytes]:
    """``ringkv ARGS`` in its own session (so the test can kill -9 it and only it)."""
    return subprocess.Popen(
        [sys.executable, "-c", CLI, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def live_recorded(base_dir: str) -> dict[str, int]:
    return {
        nid: pid
        for nid, pid in localprocs.recorded_pids(base_dir).items()
        if localprocs.is_node_of(pid, os.path.join(base_dir, nid))
    }


def kill_state_dir(base_dir: str) -> None:
    if os.path.exists(os.path.join(base_dir, "cluster.json")):
        LocalCluster.load(base_dir).kill_everything()


async def wait_for(pred, *, timeout: float, what: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"{what}: the command exited first: {out!r} {err!r}")
        assert time.monotonic() < deadline, f"{what} not within {timeout}s"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("which", ["http", "raft"])
async def test_a_taken_port_stops_the_node_at_once_naming_it(tmp_path: Path, which: str) -> None:
    clusters = Clusters(str(tmp_path))
    try:
        c = clusters.create(nodes=3, partitions=4, start=False)
        node = c.pmap.node("node-2")
        port = node.http_port if which == "http" else node.raft_port_base + 3
        with socket.socket() as squatter:
            squatter.bind((c.host, port))
            squatter.listen()
            c.start_all()
            started = time.monotonic()
            with pytest.raises(NodeExited) as exc:
                await c.wait_ready(timeout=60)
            took = time.monotonic() - started
        message = str(exc.value)
        assert message.startswith("node-2 exited with status 69 before it was ready")
        assert f"cannot listen on {c.host}:{port}" in message
        assert ("HTTP port" if which == "http" else "Raft port of partition 3") in message
        assert "BindError" not in message
        assert took < 20, took
    finally:
        clusters.teardown()


async def test_ringkv_local_up_reports_a_taken_port(tmp_path: Path) -> None:
    claim = claim_address(partitions=2)
    base = str(tmp_path / "up")
    try:
        with socket.socket() as squatter:
            squatter.bind((claim.host, 7001))
            squatter.listen()
            proc = ringkv("local", "up", "--dir", base, "--host", claim.host, "--partitions", "2")
            out, err = proc.communicate(timeout=60)
        assert proc.returncode == 1, (out, err)
        body = json.loads(err)
        assert body["code"] == "local_failed"
        assert body["error"] == "NodeExited"
        assert f"cannot listen on {claim.host}:7001 (HTTP port)" in body["message"]
    finally:
        kill_state_dir(base)
        claim.release()


async def test_teardown_kills_nodes_of_a_killed_scale_and_status_is_live(tmp_path: Path) -> None:
    """The leak of test_executor_killed_mid_plan_resumes, made on purpose: the scale command
    starts node-3 (in its own session), moves data, and is kill -9'd. The test's view of the
    cluster still has three nodes; teardown must kill node-3 anyway."""
    clusters = Clusters(str(tmp_path))
    proc = None
    try:
        c = clusters.create(nodes=3, partitions=4)
        await c.wait_ready(timeout=60)
        proc = ringkv("local", "scale", "4", "--dir", c.base_dir, "--quiet")

        async def epoch_moved() -> bool:
            status = await local.status(c.base_dir)
            return (status["epoch"] or 0) > 1

        await eventually(epoch_moved, timeout=120, what="a rebalance step bumping the epoch")
        await wait_for(
            lambda: "node-3" in live_recorded(c.base_dir), timeout=5, what="node-3", proc=proc
        )
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        node3 = live_recorded(c.base_dir)["node-3"]
        assert localprocs.alive(node3), "node-3 outlives the command that started it"
        status = await local.status(c.base_dir)
        written = LocalCluster.load(c.base_dir).pmap.epoch
        assert status["epoch"] > written, (status["epoch"], written)
        assert status["nodes"]["node-3"]["running"]
        killed = clusters.teardown()
        assert any(line.startswith(f"{node3} ") for line in killed), killed
        assert not localprocs.alive(node3)
        assert localprocs.nodes_under(c.base_dir) == []
    finally:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        clusters.teardown()


async def test_nodes_of_a_killed_up_are_found_without_pid_files(tmp_path: Path) -> None:
    claim = claim_address(partitions=2)
    base = str(tmp_path / "up")
    proc = ringkv("local", "up", "--dir", base, "--host", claim.host, "--partitions", "2")
    try:
        await wait_for(
            lambda: len(live_recorded(base)) == 3, timeout=30, what="three nodes", proc=proc
        )
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        pids = set(live_recorded(base).values())
        shutil.rmtree(os.path.join(base, localprocs.PID_DIR))  # only /proc can find them now
        killed = LocalCluster.load(base).kill_everything()
        assert {p.pid for p in killed} == pids
        assert not any(localprocs.alive(pid) for pid in pids)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        kill_state_dir(base)
        claim.release()


async def test_up_seals_the_bootstrap_so_a_wiped_volume_needs_a_reseed(tmp_path: Path) -> None:
    """After ``local up`` the cluster is past its epoch-1 map (same placement, epoch 2), so a
    node restarted on an emptied volume reports needs-reseed instead of rejoining empty."""
    claim = claim_address(partitions=2)
    base = str(tmp_path / "up")
    try:
        out = await local.up(base_dir=base, host=claim.host, partitions=2, timeout=90)
        assert out["epoch"] == 2
        cluster = LocalCluster.load(base)
        assert cluster.pmap.epoch == 2
        victim = cluster.pmap.nodes[1].node_id
        cluster.stop_node(victim)
        shutil.rmtree(cluster.data_dir(victim))
        cluster.start_node(victim)

        url = cluster.pmap.node(victim).http_url + "/readyz"

        async def refused() -> Any:
            try:
                async with aiohttp.ClientSession() as s, s.get(url, timeout=TIMEOUT) as r:
                    status, body = r.status, await r.json()
            except aiohttp.ClientError:  # not listening yet
                return None
            return body if status == 503 and body.get("needs_reseed") else None

        body = await eventually(refused, timeout=60, what="needs-reseed on the wiped node")
        assert body["needs_reseed"] == list(cluster.pmap.partitions_of(victim))
    finally:
        kill_state_dir(base)
        claim.release()
