"""The throughput and latency cost of TLS and Raft encryption (issue 12): the same load on a
3-node cluster plain, with the Raft password only, with TLS + Raft password, and with TLS +
Raft password + auth, alternating the modes each round so a busy machine hurts all alike.

    python bench/tls_cost.py [--clients 16] [--seconds 5] [--rounds 2]

Each round starts a fresh 3-node cluster (16 partitions, RF 3) per mode on a loopback address
of its own (``kvnode.localtls`` makes the CA, node certificates and Raft password, as ``ringkv
local up --tls`` does). ``--clients`` concurrent workers share one smart client (direct to the
leaders, so one HTTP connection per worker and node at most, handshakes only at the start); a
Raft entry crosses two encrypted links per write. Prints ops/s, p99 and the nodes' CPU per
operation (user + system time of the three node processes from /proc, which a busy machine moves
far less than ops/s) per mode and op, and each mode's ratio to plain.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from kvnode import localauth, localtls
from kvnode.client import Client
from kvnode.local import LocalCluster

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests.support.addresses import claim_address

OPS = ("put", "get strong")
MODES = ("plain", "raft-pw", "tls", "tls+auth")
TICK_S = 1 / os.sysconf("SC_CLK_TCK")


@asynccontextmanager
async def cluster_in(mode: str) -> AsyncIterator[tuple[LocalCluster, str | None]]:
    base = tempfile.mkdtemp(prefix="ringkv-tlscost-")
    claim = claim_address(partitions=16)
    env: dict[str, str] = {}
    token = None
    if mode == "raft-pw":
        env[localtls.RAFT_PASSWORD_ENV] = localtls.ensure_tls_files(base).raft_password_file
    elif mode != "plain":
        env.update(localtls.ensure_tls_files(base).cluster_env())
    if mode == "tls+auth":
        files = localauth.ensure_auth_files(base)
        env.update(files.node_env())
        token = await asyncio.to_thread(lambda: Path(files.admin_token_file).read_text().strip())
    cluster = LocalCluster.create(os.path.join(base, "c"), nodes=3, partitions=16,
                                  replication=3, host=claim.host, base_port=claim.base_port,
                                  env=env)  # fmt: skip
    cluster.start_all()
    try:
        await cluster.wait_ready(timeout=90)
        yield cluster, token
    finally:
        cluster.kill_everything()
        claim.release()
        shutil.rmtree(base, ignore_errors=True)


def node_cpu_s(cluster: LocalCluster) -> float:
    """User + system CPU seconds the cluster's node processes have used so far."""
    total = 0.0
    for nid in cluster.node_ids:
        pid = cluster.pid(nid)
        assert pid is not None, f"{nid} is not running"
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) * TICK_S  # utime, stime
    return total


async def measure(
    c: Client, op: str, clients: int, seconds: float, cluster: LocalCluster
) -> tuple[float, float, float]:
    """(ops/s, p99 latency in ms, node CPU ms per op) of ``clients`` workers doing ``op``."""
    value, stop = "v" * 100, time.monotonic() + seconds
    latencies: list[float] = []

    async def worker(w: int) -> None:
        n = 0
        while time.monotonic() < stop:
            key = f"tp{w}-{n % 200}"
            t0 = time.perf_counter()
            if op == "put":
                await c.put(key, value)
            else:
                await c.get(key)
            latencies.append(time.perf_counter() - t0)
            n += 1

    t0, cpu0 = time.perf_counter(), node_cpu_s(cluster)
    await asyncio.gather(*(worker(w) for w in range(clients)))
    elapsed, cpu = time.perf_counter() - t0, node_cpu_s(cluster) - cpu0
    p99 = statistics.quantiles(latencies, n=100)[98] if len(latencies) > 1 else float("nan")
    return len(latencies) / elapsed, p99 * 1000, cpu / max(1, len(latencies)) * 1000


async def main(clients: int, seconds: float, rounds: int) -> None:
    results: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    for r in range(rounds):
        for mode in MODES:
            async with cluster_in(mode) as (cluster, token):
                c = Client(cluster.endpoints, timeout=30, token=token, ca_file=cluster.ca_file)
                try:
                    for i in range(200):
                        await c.put(f"tp{i % clients}-{i}", "warm")
                    for op in OPS:
                        got = await measure(c, op, clients, seconds, cluster)
                        results.setdefault((mode, op), []).append(got)
                        print(f"round {r} {mode} {op}: {got[0]:.0f} ops/s, p99 {got[1]:.1f} ms, "
                              f"node CPU {got[2]:.2f} ms/op", flush=True)  # fmt: skip
                finally:
                    await c.close()
    print(f"\n{clients} clients, {seconds}s per op, {rounds} rounds (medians)")
    print("op          mode        ops/s   p99 ms  CPU ms/op   ops/s   p99  CPU/op  (vs plain)")
    for op in OPS:
        base = [statistics.median(m[i] for m in results[("plain", op)]) for i in range(3)]
        for mode in MODES:
            ops, p99, cpu = (statistics.median(m[i] for m in results[(mode, op)]) for i in range(3))
            print(f"{op:<11} {mode:<9} {ops:>8.0f} {p99:>8.1f} {cpu:>10.2f} "
                  f"{ops / base[0]:>7.2f} {p99 / base[1]:>5.2f} {cpu / base[2]:>7.2f}")  # fmt: skip


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    asyncio.run(main(args.clients, args.seconds, args.rounds))
