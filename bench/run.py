"""ringkv benchmarks on a real local cluster; prints a table per scenario.

    ./dev bench latency    [--ops 2000]                 sequential put/get p50/p99
    ./dev bench throughput [--clients 64 --seconds 10]  concurrent puts and gets
    ./dev bench restart    [--keys 1000000]             restart time of a node holding N keys
    ./dev bench move       [--mb 100]                   move one replica of a big partition
    ./dev bench rebalance  [--seconds 10]               client load before/during 3->5->3
    ./dev bench all
    ./dev bench compare    [--quick] [--seconds 2]      ringkv vs etcd side by side (--help)
    ./dev bench profile    [--seconds 10]               py-spy of node 0 under put / get load
    ./dev bench http-path  [--base-node DIR]            HTTP layer CPU per request (fake service)
    ./dev bench watch      [--watchers 1,10,50]         watch fan-out: delivered/s, lag p50/p99

Each scenario starts its own 3-node cluster (16 partitions, RF 3) in a temporary directory, on a
loopback address of its own (tests.support.addresses; ports below 32768), and kills every node
process of that directory afterwards. Load is bounded in count and time.
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

from kvnode.client import BatchOp, Client, NodeHttp
from kvnode.local import LocalCluster

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench import compare as compare_bench  # needs the repository root on sys.path
from bench import http_path as http_path_bench
from bench import rebalance as rebalance_bench
from bench import spyprofile as profile_bench
from bench import watch as watch_bench
from tests.support.addresses import claim_address


@asynccontextmanager
async def local_cluster(*, partitions: int = 16) -> AsyncIterator[LocalCluster]:
    base = tempfile.mkdtemp(prefix="ringkv-bench-")
    claim = claim_address(partitions=partitions)  # own loopback address, ports < 32768
    cluster = LocalCluster.create(
        base,
        nodes=3,
        partitions=partitions,
        replication=3,
        host=claim.host,
        base_port=claim.base_port,
    )
    cluster.start_all()
    try:
        await cluster.wait_ready(timeout=90)
        yield cluster
    finally:
        cluster.kill_everything()
        claim.release()
        shutil.rmtree(base, ignore_errors=True)


def pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))] * 1000


def table(title: str, header: list[str], rows: list[list[object]]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)))


async def latency(ops: int) -> None:
    async with local_cluster() as cluster, Client(cluster.endpoints) as c:
        value = "v" * 100
        for i in range(100):  # warm-up: map, leaders, connections
            await c.put(f"warm{i}", value)
        rows = []
        for name, fn in (
            ("put", lambda i: c.put(f"lat{i}", value)),
            ("get strong", lambda i: c.get(f"lat{i}")),
            ("get eventual", lambda i: c.get(f"lat{i}", consistency="eventual")),
        ):
            samples = []
            for i in range(ops):
                t = time.perf_counter()
                await fn(i)
                samples.append(time.perf_counter() - t)
            rows.append(
                [
                    name,
                    ops,
                    f"{pct(samples, 0.5):.2f}",
                    f"{pct(samples, 0.99):.2f}",
                    f"{statistics.mean(samples) * 1000:.2f}",
                ]
            )
        table(
            "sequential latency, 3 nodes, 16 partitions, RF 3, 100-byte values (ms)",
            ["op", "n", "p50", "p99", "mean"],
            rows,
        )


async def throughput(clients: int, seconds: float) -> None:
    async with local_cluster() as cluster, Client(cluster.endpoints) as c:
        value = "v" * 100
        for i in range(100):
            await c.put(f"warm{i}", value)
        rows = []
        for name in ("put", "get strong", "get eventual"):
            lat: list[float] = []
            errors = 0
            stop = time.monotonic() + seconds

            async def worker(
                w: int, name: str = name, stop: float = stop, lat: list[float] = lat
            ) -> None:
                nonlocal errors
                n = 0
                while time.monotonic() < stop:
                    key = f"tp{w}-{n % 200}"
                    t = time.perf_counter()
                    try:
                        if name == "put":
                            await c.put(key, value)
                        else:
                            await c.get(key, consistency=name.split()[1])
                    except Exception:
                        errors += 1
                    lat.append(time.perf_counter() - t)
                    n += 1

            t0 = time.perf_counter()
            await asyncio.gather(*(worker(w) for w in range(clients)))
            dt = time.perf_counter() - t0
            rows.append(
                [
                    name,
                    clients,
                    len(lat),
                    f"{len(lat) / dt:.0f}",
                    f"{pct(lat, 0.5):.1f}",
                    f"{pct(lat, 0.99):.1f}",
                    errors,
                ]
            )
        table(
            f"throughput, {clients} concurrent clients, {seconds:.0f} s each, 3 nodes, "
            "16 partitions, RF 3",
            ["op", "clients", "ops", "ops/s", "p50 ms", "p99 ms", "errors"],
            rows,
        )


async def load_keys(c: Client, keys: int, *, batch: int = 200, concurrency: int = 16) -> float:
    value = "x" * 100
    sem = asyncio.Semaphore(concurrency)
    t0 = time.perf_counter()

    async def one(start: int) -> None:
        async with sem:
            ops = [
                BatchOp.put(f"bulk:{{{start}}}:{i}", value)
                for i in range(start, min(keys, start + batch))
            ]
            await c.batch(ops, atomic=True)

    await asyncio.gather(*(one(s) for s in range(0, keys, batch)))
    return time.perf_counter() - t0


async def restart(keys: int) -> None:
    async with local_cluster() as cluster:
        async with Client(cluster.endpoints, timeout=60) as c:
            load_s = await load_keys(c, keys)
        victim = cluster.node_ids[1]
        sizes = _dir_size(cluster.node(victim).data_dir)
        rows = []
        for how in ("SIGTERM", "SIGKILL"):
            if how == "SIGTERM":
                cluster.stop_node(victim)
            else:
                cluster.kill_node(victim)
            t0 = time.perf_counter()
            cluster.start_node(victim)
            await _wait_node_ready(cluster, victim)
            rows.append([how, keys, f"{sizes / 1e6:.0f}", f"{time.perf_counter() - t0:.2f}"])
        table(
            f"restart of one node holding {keys} keys (load took {load_s:.1f} s, "
            f"{keys / load_s:.0f} keys/s via atomic batches of 200)",
            ["stop", "keys", "data MB", "restart-to-ready s"],
            rows,
        )


async def _wait_node_ready(cluster: LocalCluster, node_id: str, timeout: float = 300) -> None:
    http = NodeHttp()
    url = cluster.pmap.node(node_id).http_url
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                await http.call(url, "GET", "/readyz", timeout=1.0)
                return
            except Exception:
                await asyncio.sleep(0.05)
    finally:
        await http.close()
    raise TimeoutError(f"{node_id} not ready after {timeout}s\n{cluster.log_tail(node_id)}")


def _dir_size(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def main() -> None:
    if sys.argv[1:2] == ["compare"]:
        compare_bench.main(sys.argv[2:])
        return
    if sys.argv[1:2] == ["profile"]:
        profile_bench.main(sys.argv[2:])
        return
    if sys.argv[1:2] == ["watch"]:
        watch_bench.main(sys.argv[2:])
        return
    if sys.argv[1:2] == ["http-path"]:
        http_path_bench.main(sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "scenario", choices=["latency", "throughput", "restart", "move", "rebalance", "all"]
    )
    ap.add_argument("--mb", type=int, default=100)
    ap.add_argument("--ops", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--keys", type=int, default=1_000_000)
    args = ap.parse_args()
    if args.scenario in ("latency", "all"):
        asyncio.run(latency(args.ops))
    if args.scenario in ("throughput", "all"):
        asyncio.run(throughput(args.clients, args.seconds))
    if args.scenario in ("restart", "all"):
        asyncio.run(restart(args.keys))
    if args.scenario in ("move", "all"):
        asyncio.run(rebalance_bench.move(args.mb, table))
    if args.scenario in ("rebalance", "all"):
        asyncio.run(rebalance_bench.rebalance(args.seconds, table))


if __name__ == "__main__":
    main()
