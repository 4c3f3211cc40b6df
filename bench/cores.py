"""How many cores a node process uses under load: is one node bound by its GIL (one core) while
the machine has more, or are the machine's cores the limit?

    ./dev shell, then: python bench/cores.py [--seconds 10] [--connections 64]

Two clusters one after the other, each driven at saturation by strong GETs of preloaded 1 KiB
keys through the smart client (``connections`` in flight, straight to the leaders): 1 node
(16 partitions, replication 1: every request lands on the one process) and 3 nodes (16
partitions, RF 3, as ``bench compare`` runs it). Prints ops/s and the cores (user + system CPU
seconds per wall second, from /proc) of each node process and of this load generator.
A node process near 1.0 core while the machine's total stays below its core count is the GIL's
limit; several nodes whose sum is the machine's cores are the machine's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from kvnode.client import Client
from kvnode.local import LocalCluster

from bench import compare, workloads  # needs the repository root on sys.path
from bench.write_cpu import cpu_seconds
from tests.support.addresses import claim_address

PARTITIONS = 16


def own_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def drive(endpoints: list[str], records: int, connections: int, seconds: float) -> int:
    done = 0
    stop = time.monotonic() + seconds
    async with Client(endpoints, timeout=30) as client:

        async def worker(w: int) -> None:
            nonlocal done
            i = w
            while time.monotonic() < stop:
                await client.get(workloads.key_name(i % records))
                done += 1
                i += connections

        await asyncio.gather(*(worker(w) for w in range(connections)))
    return done


async def measure(nodes: int, args: argparse.Namespace) -> None:
    base = tempfile.mkdtemp(prefix="ringkv-bench-cores-")
    claim = claim_address(partitions=PARTITIONS)
    cluster = LocalCluster.create(
        base,
        nodes=nodes,
        partitions=PARTITIONS,
        replication=min(3, nodes),
        host=claim.host,
        base_port=claim.base_port,
    )
    try:
        cluster.start_all()
        await cluster.wait_ready(timeout=90)
        await compare.preload_ringkv(cluster.endpoints, args.records)
        await drive(cluster.endpoints, args.records, args.connections, 2.0)  # warm up
        pids = [cluster.pid(n) for n in cluster.node_ids]
        assert all(pids), pids
        per0 = [cpu_seconds([p]) for p in pids]  # type: ignore[list-item]
        gen0, t0 = own_cpu(), time.perf_counter()
        ops = await drive(cluster.endpoints, args.records, args.connections, args.seconds)
        wall = time.perf_counter() - t0
        per = [(cpu_seconds([p]) - c) / wall for p, c in zip(pids, per0, strict=True)]  # type: ignore[list-item]
        gen = (own_cpu() - gen0) / wall
        cores = " ".join(f"{c:.2f}" for c in per)
        print(
            f"| {nodes} | {ops / wall:.0f} | {cores} | {sum(per):.2f} | {gen:.2f} | "
            f"{sum(per) + gen:.2f} of {os.cpu_count()} |",
            flush=True,
        )
    finally:
        cluster.kill_everything()
        claim.release()
        shutil.rmtree(base, ignore_errors=True)


async def main(args: argparse.Namespace) -> None:
    print(
        f"strong GETs, smart client, {args.connections} in flight, {args.seconds:g} s, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print("| nodes | ops/s | cores per node | nodes total | generator | machine |")
    print("|---|---|---|---|---|---|")
    for nodes in (1, 3):
        await measure(nodes, args)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--records", type=int, default=2000)
    asyncio.run(main(ap.parse_args()))
