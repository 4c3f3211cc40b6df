"""Watch fan-out benchmark (``./dev bench watch``): N watchers on one prefix while writers put.

For each watcher count, one 3-node cluster (8 partitions, RF 3) takes ``--writers`` concurrent
writers for ``--seconds``; the watchers (spread over the nodes, each a ``Client.watch`` async
iterator) must each receive every acknowledged write. Reported: writes/s committed, changes
delivered per second over all watchers (watchers x updates/s), delivery lag from proposal to
the watcher's loop (p50/p99; writers, watchers and nodes share this machine's cores, so lag
includes client-side queueing), and whether every watcher got every write.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import time
from collections.abc import Callable, Sequence

from kvnode.client import Client

Table = Callable[[str, list[str], list[list[object]]], None]
PREFIX = "bw/"


async def _watch(client: Client, counts: list[int], lags: list[float], idx: int) -> None:
    async for event in client.watch(PREFIX):
        counts[idx] += 1
        if event.ts_ms:
            lags.append(time.time() * 1000 - event.ts_ms)


async def _write(client: Client, until: float, worker: int, acked: list[int]) -> None:
    n = 0
    value = "v" * 100
    while time.monotonic() < until:
        await client.put(f"{PREFIX}{worker}/{n % 500}", value)
        acked[0] += 1
        n += 1


async def _all_delivered(counts: list[int], total: int) -> None:
    while min(counts) < total:  # noqa: ASYNC110 (counts are plain ints bumped by the watchers)
        await asyncio.sleep(0.1)


async def one_round(endpoints: list[str], watchers: int, writers: int, seconds: float) -> list:
    counts = [0] * watchers
    lags: list[float] = []
    clients = [Client([endpoints[i % len(endpoints)]]) for i in range(watchers)]
    tasks = [asyncio.create_task(_watch(c, counts, lags, i)) for i, c in enumerate(clients)]
    acked = [0]
    try:
        await asyncio.sleep(1.0)  # every watcher connected (ready) before the first write
        async with Client(endpoints) as wc:
            t0 = time.monotonic()
            await asyncio.gather(*(_write(wc, t0 + seconds, w, acked) for w in range(writers)))
            elapsed = time.monotonic() - t0
        with contextlib.suppress(TimeoutError):  # bounded: a shortfall is reported, not hidden
            await asyncio.wait_for(_all_delivered(counts, acked[0]), 60)
        delivered_s = time.monotonic() - t0
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        for c in clients:
            await c.close()
    lags.sort()
    q = statistics.quantiles(lags, n=100) if len(lags) >= 2 else [0.0] * 99
    return [
        watchers,
        f"{acked[0] / elapsed:.0f}",
        f"{sum(counts) / delivered_s:.0f}",
        f"{q[49]:.1f}",
        f"{q[98]:.1f}",
        "yes" if min(counts) >= acked[0] else f"no (min {min(counts)} of {acked[0]})",
    ]


async def run(watcher_counts: Sequence[int], writers: int, seconds: float, table: Table) -> None:
    from bench.run import local_cluster

    rows = []
    for n in watcher_counts:
        async with local_cluster(partitions=8) as cluster:
            rows.append(await one_round(cluster.endpoints, n, writers, seconds))
    table(
        f"watch fan-out: {writers} writers for {seconds:.0f}s, 100-byte values, 8 partitions "
        "(one machine: writers, watchers and 3 nodes share its cores)",
        ["watchers", "writes/s", "delivered/s", "lag p50 ms", "lag p99 ms", "all delivered"],
        rows,
    )


def main(argv: Sequence[str]) -> None:
    ap = argparse.ArgumentParser(prog="./dev bench watch", description=__doc__)
    ap.add_argument("--watchers", default="1,10,50", help="comma-separated watcher counts")
    ap.add_argument("--writers", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args(argv)
    from bench.run import table

    counts = [int(x) for x in args.watchers.split(",") if x.strip()]
    asyncio.run(run(counts, args.writers, args.seconds, table))


if __name__ == "__main__":
    main(sys.argv[1:])
