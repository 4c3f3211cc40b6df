"""CPU the nodes spend per acknowledged write: a measure of the write path that a busy machine
does not distort the way throughput is (other load changes how much CPU the nodes get, not how
much they need per write).

    ./dev shell, then: python bench/write_cpu.py --durability fsync --connections 1,16,64

A 3-node ringkv (16 partitions, RF 3) as ``bench compare`` starts it; per connection count, a
fixed number of 1 KiB puts of fresh keys through the smart client (straight to the leaders, so
no forwarding hop), ``connections`` in flight. Prints ops/s, p50/p99, the three node processes'
CPU (user + system, from /proc) per write and the system part of it, client write requests per
Raft entry (``ringkv_write_requests_total / ringkv_write_entries_total``) and, in ``fsync`` mode,
the nodes' WAL syncs per write (``ringkv_wal_syncs_total``: one per replica per write without
any sharing).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

import aiohttp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from kvnode.client import Client

from bench import compare, workloads  # needs the repository root on sys.path

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> tuple[float, float]:
    """(user, system) CPU seconds of ``pids`` (all threads) from /proc."""
    user = system = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        user += int(fields[11])
        system += int(fields[12])
    return user / TICK, system / TICK


async def counters(endpoints: list[str]) -> dict[str, float]:
    """The nodes' write and WAL counters summed (``ringkv_write_*``, ``ringkv_wal_*``)."""
    found: dict[str, float] = {}
    async with aiohttp.ClientSession() as http:
        for url in endpoints:
            async with http.get(f"{url}/metrics") as resp:
                text = await resp.text()
            for line in text.splitlines():
                if line.startswith(("ringkv_write_", "ringkv_wal_")):
                    name = line.split("{")[0]
                    found[name] = found.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return found


async def burst(client: Client, prefix: str, total: int, connections: int) -> list[float]:
    latencies: list[float] = []
    keys = iter(range(total))

    async def worker() -> None:
        for i in keys:
            key = f"{prefix}/{i}"
            t0 = time.perf_counter()
            await client.put(key, workloads.value_for(key, 0))
            latencies.append(time.perf_counter() - t0)

    await asyncio.gather(*(worker() for _ in range(connections)))
    return sorted(latencies)


async def main(args: argparse.Namespace) -> None:
    plan = compare.Plan(durability=args.durability)
    async with compare.ringkv_cluster(plan) as cluster:
        pids = [cluster.pid(n) for n in cluster.node_ids]
        assert all(pids), pids
        async with Client(cluster.endpoints, timeout=30) as client:
            await burst(client, "warm", 300, 16)
            print(f"durability={args.durability} load {os.getloadavg()[0]:.1f}", flush=True)
            print(
                "| conns | writes | ops/s | p50 ms | p99 ms | node CPU ms/write "
                "| of which system | req/entry | WAL syncs/write |"
            )
            print("|---|---|---|---|---|---|---|---|---|")
            for conns in args.connections:
                before = await counters(cluster.endpoints)
                cpu0, t0 = cpu_seconds(pids), time.perf_counter()  # type: ignore[arg-type]
                lat = await burst(client, f"c{conns}", args.writes, conns)
                cpu1 = cpu_seconds(pids)  # type: ignore[arg-type]
                wall = time.perf_counter() - t0
                cpu, system = sum(cpu1) - sum(cpu0), cpu1[1] - cpu0[1]
                after = await counters(cluster.endpoints)
                delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
                entries = delta.get("ringkv_write_entries_total", 0.0)
                ratio = "-"
                if entries > 0:
                    ratio = f"{delta['ringkv_write_requests_total'] / entries:.2f}"
                syncs = "-"
                if "ringkv_wal_syncs_total" in delta:
                    syncs = f"{delta['ringkv_wal_syncs_total'] / len(lat):.2f}"
                p50, p99 = lat[len(lat) // 2], lat[int(len(lat) * 0.99) - 1]
                print(
                    f"| {conns} | {len(lat)} | {len(lat) / wall:.0f} | {p50 * 1e3:.1f} | "
                    f"{p99 * 1e3:.1f} | {cpu / len(lat) * 1e3:.2f} | "
                    f"{system / len(lat) * 1e3:.2f} | {ratio} | {syncs} |",
                    flush=True,
                )


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--durability", choices=["process", "fsync"], default="fsync")
    ap.add_argument(
        "--connections", type=lambda s: [int(x) for x in s.split(",")], default=[1, 16, 64]
    )
    ap.add_argument("--writes", type=int, default=1500)
    asyncio.run(main(ap.parse_args()))
