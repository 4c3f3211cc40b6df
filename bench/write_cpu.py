"""CPU the nodes spend per acknowledged write: a measure of the write path that a busy machine
does not distort the way throughput is (other load changes how much CPU the nodes get, not how
much they need per write).

    ./dev shell, then: python bench/write_cpu.py --durability fsync --connections 1,16,64

A 3-node ringkv (16 partitions, RF 3) as ``bench compare`` starts it; per connection count, a
fixed number of 1 KiB puts of fresh keys through the smart client (straight to the leaders, so
no forwarding hop), ``connections`` in flight. Prints ops/s, p50/p99, the three node processes'
CPU (user + system, from /proc) per write, and, where the nodes export them, client write
requests per Raft entry (``ringkv_write_requests_total / ringkv_write_entries_total``).
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


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICK


async def counters(endpoints: list[str]) -> tuple[float, float] | None:
    entries = requests = 0.0
    async with aiohttp.ClientSession() as http:
        for url in endpoints:
            async with http.get(f"{url}/metrics") as resp:
                text = await resp.text()
            found = {
                line.split("{")[0]: float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("ringkv_write_")
            }
            if "ringkv_write_entries_total" not in found:
                return None
            entries += found["ringkv_write_entries_total"]
            requests += found["ringkv_write_requests_total"]
    return entries, requests


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
            print("| conns | writes | ops/s | p50 ms | p99 ms | node CPU ms/write | req/entry |")
            print("|---|---|---|---|---|---|---|")
            for conns in args.connections:
                before = await counters(cluster.endpoints)
                cpu0, t0 = cpu_seconds(pids), time.perf_counter()  # type: ignore[arg-type]
                lat = await burst(client, f"c{conns}", args.writes, conns)
                wall, cpu = time.perf_counter() - t0, cpu_seconds(pids) - cpu0  # type: ignore[arg-type]
                after = await counters(cluster.endpoints)
                ratio = "-"
                if before is not None and after is not None and after[0] > before[0]:
                    ratio = f"{(after[1] - before[1]) / (after[0] - before[0]):.2f}"
                p50, p99 = lat[len(lat) // 2], lat[int(len(lat) * 0.99) - 1]
                print(
                    f"| {conns} | {len(lat)} | {len(lat) / wall:.0f} | {p50 * 1e3:.1f} | "
                    f"{p99 * 1e3:.1f} | {cpu / len(lat) * 1e3:.2f} | {ratio} |",
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
