"""A 3-member etcd cluster from Debian's ``etcd`` binary, for ``bench compare``.

Members listen on a loopback address of their own (claimed like a test cluster's, via
``tests.support.addresses``) with fixed ports below the ephemeral range: client 2379+2i, peer
2380+2i. Data directories live in a temporary directory; fsync is on (etcd's defaults, nothing
unsafe is passed). ``etcd_cluster`` kills every member it started and removes the directory
when it exits, pass or fail. Every wait is bounded and a timeout carries the members' logs.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp

from tests.support.addresses import claim_address, unbindable

log = logging.getLogger(__name__)

ETCD_BIN = os.environ.get("RINGKV_BENCH_ETCD", "etcd")
CLIENT_PORT = 2379
MEMBERS = 3
START_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class Member:
    name: str
    host: str
    client_port: int
    peer_port: int

    @property
    def client_url(self) -> str:
        return f"http://{self.host}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{self.host}:{self.peer_port}"


def members(host: str, *, count: int = MEMBERS, base_port: int = CLIENT_PORT) -> list[Member]:
    return [Member(f"m{i}", host, base_port + 2 * i, base_port + 2 * i + 1) for i in range(count)]


def member_command(m: Member, everyone: list[Member], data_dir: str) -> list[str]:
    """The command line of one member: a fresh static cluster, etcd's durability defaults."""
    initial = ",".join(f"{x.name}={x.peer_url}" for x in everyone)
    return [
        ETCD_BIN,
        "--name", m.name,
        "--data-dir", data_dir,
        "--listen-client-urls", m.client_url,
        "--advertise-client-urls", m.client_url,
        "--listen-peer-urls", m.peer_url,
        "--initial-advertise-peer-urls", m.peer_url,
        "--initial-cluster", initial,
        "--initial-cluster-state", "new",
        "--initial-cluster-token", "ringkv-bench",
    ]  # fmt: skip


@dataclass
class EtcdCluster:
    base: str
    members: list[Member]
    procs: dict[str, subprocess.Popen[bytes]]
    leader_url: str = ""

    def log_tail(self, lines: int = 20) -> str:
        out = []
        for m in self.members:
            path = os.path.join(self.base, f"{m.name}.log")
            with contextlib.suppress(OSError), open(path, errors="replace") as f:
                tail = f.readlines()[-lines:]
            out.append(f"--- {m.name} ---\n" + "".join(tail))
        return "\n".join(out)

    def kill(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                log.error("etcd member %s (pid %d) did not exit after SIGKILL", name, proc.pid)


@contextlib.asynccontextmanager
async def etcd_cluster() -> AsyncIterator[EtcdCluster]:
    """Start 3 members, wait for a leader, yield; kill them and remove their data at the end."""
    claim = claim_address(nodes=1, partitions=1)
    base = tempfile.mkdtemp(prefix="ringkv-bench-etcd-")
    everyone = members(claim.host)
    ports = [p for m in everyone for p in (m.client_port, m.peer_port)]
    cluster = EtcdCluster(base=base, members=everyone, procs={})
    try:
        taken = unbindable(claim.host, ports)
        if taken is not None:
            raise RuntimeError(f"etcd port {claim.host}:{taken} is taken")
        start_members(cluster)
        cluster.leader_url = await wait_leader(cluster, timeout=START_TIMEOUT_S)
        log.info("etcd cluster on %s ready, leader %s", claim.host, cluster.leader_url)
        yield cluster
    finally:
        cluster.kill()
        claim.release()
        shutil.rmtree(base, ignore_errors=True)


def start_members(cluster: EtcdCluster) -> None:
    """Each member in its own session (a signal to our group does not reach it), logging to
    ``<base>/<name>.log``; pids are recorded in ``cluster.procs`` at once, for ``kill``."""
    for m in cluster.members:
        with open(os.path.join(cluster.base, f"{m.name}.log"), "ab") as logf:
            cluster.procs[m.name] = subprocess.Popen(
                member_command(m, cluster.members, os.path.join(cluster.base, m.name)),
                stdout=logf,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )


async def wait_leader(cluster: EtcdCluster, *, timeout: float) -> str:
    """The client URL of the member that leads, once every member answers and agrees."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as s:
        while time.monotonic() < deadline:
            for name, proc in cluster.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"etcd member {name} exited with {proc.returncode}\n{cluster.log_tail()}"
                    )
            try:
                leader = await _leader(s, cluster.members)
                # A write through the leader proves the cluster commits (not only elected).
                await _put(s, leader, "ringkv-bench-probe", "ok")
                return leader
            except (aiohttp.ClientError, TimeoutError, LookupError) as exc:
                last = repr(exc)
            await asyncio.sleep(0.2)
    raise TimeoutError(f"etcd cluster not ready within {timeout}s ({last})\n{cluster.log_tail()}")


async def _leader(s: aiohttp.ClientSession, everyone: list[Member]) -> str:
    ids: dict[str, str] = {}
    leaders = set()
    for m in everyone:
        async with s.post(m.client_url + "/v3/maintenance/status", json={}) as resp:
            resp.raise_for_status()
            body = await resp.json()
        ids[str(body["header"]["member_id"])] = m.client_url
        leaders.add(str(body.get("leader", "0")))
    if len(leaders) != 1 or next(iter(leaders)) not in ids:
        raise LookupError(f"members do not agree on a leader: {sorted(leaders)}")
    return ids[next(iter(leaders))]


async def _put(s: aiohttp.ClientSession, url: str, key: str, value: str) -> None:
    body = {"key": _b64(key), "value": _b64(value)}
    async with s.post(url + "/v3/kv/put", json=body) as resp:
        resp.raise_for_status()


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()
