"""Rebalance benchmarks (``./dev bench move`` and ``./dev bench rebalance``).

move:      one partition holding ``--mb`` MB (1 KB values, one hash tag) gets a new replica on a
           fourth node through the executor (seed stream, add, catch up, verify, remove, drop):
           time and bytes moved.
rebalance: a checking client workload runs for ``--seconds`` before, then during a 3 -> 5 and a
           5 -> 3 scale of a 16-partition cluster: success rate, throughput and latency per phase.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from kvnode.client import BatchOp, Client
from kvnode.core import hashing
from kvnode.core.model import PartitionMap
from kvnode.local import LocalCluster, scale_cluster
from kvnode.rebalance.executor import Options, Rebalancer
from kvnode.rebalance.http_admin import HttpNodeAdmin

from tests.support.addresses import claim_address
from tests.support.workload import Workload

Table = Callable[[str, list[str], list[list[object]]], None]


@asynccontextmanager
async def cluster(partitions: int) -> AsyncIterator[LocalCluster]:
    base = tempfile.mkdtemp(prefix="ringkv-bench-rebalance-")
    claim = claim_address(partitions=partitions)  # own loopback address, ports < 32768
    c = LocalCluster.create(
        base, nodes=3, partitions=partitions, host=claim.host, base_port=claim.base_port
    )
    c.start_all()
    ok = False
    try:
        await c.wait_ready(timeout=90)
        yield c
        ok = True
    finally:
        c.kill_everything()  # every node process of the state dir, whoever started it
        claim.release()
        if ok:
            shutil.rmtree(base, ignore_errors=True)
        else:
            print(f"benchmark failed; node logs kept in {base}")


async def move(mb: int, table: Table) -> None:
    async with cluster(partitions=4) as c:
        tag = "big"
        p = hashing.partition_of("{" + tag + "}", c.pmap.partitions)
        value = "v" * 1000
        keys = mb * 1000
        t0 = time.perf_counter()
        async with Client(c.endpoints, timeout=60) as client:
            sem = asyncio.Semaphore(4)

            async def put_batch(start: int) -> None:
                async with sem:
                    ops = [
                        BatchOp.put(f"{{{tag}}}:{i}", value)
                        for i in range(start, min(keys, start + 200))
                    ]
                    await client.batch(ops, atomic=True)

            await asyncio.gather(*(put_batch(s) for s in range(0, keys, 200)))
        load_s = time.perf_counter() - t0
        new = c.new_node(3)
        current = c.pmap
        replicas = [list(r) for r in current.replicas]
        old = replicas[p][-1]  # a follower (the preferred leader stays)
        replicas[p][-1] = new.node_id
        target = PartitionMap.build(
            epoch=current.epoch,
            nodes=[*current.nodes, new],
            replicas=replicas,
            replication=current.replication,
        )
        c.set_map(
            PartitionMap.build(
                epoch=current.epoch,
                nodes=target.nodes,
                replicas=current.replicas,
                replication=current.replication,
            )
        )
        c.start_node(new.node_id)
        await c.wait_ready(nodes=[new.node_id])
        admin = HttpNodeAdmin()
        state = os.path.join(c.base_dir, "move.json")
        try:
            rb = Rebalancer.create(state, current, target, admin=admin, options=Options())
            t0 = time.perf_counter()
            await rb.run()
            move_s = time.perf_counter() - t0
        finally:
            await admin.close()
        moved = rb.progress.bytes_moved
        table(
            f"move one replica of a {mb} MB partition ({keys} keys of 1 KB; load took "
            f"{load_s:.1f} s) from {old} to {new.node_id}",
            ["partition MB", "bytes moved", "seed+add+catch-up+verify+remove+drop s", "MB/s"],
            [[mb, moved, f"{move_s:.2f}", f"{moved / 1e6 / move_s:.1f}"]],
        )


async def rebalance(seconds: float, table: Table) -> None:
    async with cluster(partitions=16) as c:
        async with Client(c.endpoints, timeout=60) as client:
            for i in range(0, 20000, 200):
                await client.batch([BatchOp.put(f"pre:{{{i}}}:{j}", "x" * 100) for j in range(200)])
        phases: list[tuple[str, float, float, dict[str, object]]] = []
        async with Workload(c.endpoints, writers=8, readers=8) as wl:
            t0 = time.monotonic()
            await asyncio.sleep(seconds)
            phases.append(("before", t0, time.monotonic(), {}))
            for n in (5, 3):
                t0 = time.monotonic()
                result = await scale_cluster(c, n, options=Options(max_concurrent=2))
                phases.append((f"scale to {n}", t0, time.monotonic(), result))
            t0 = time.monotonic()
            await asyncio.sleep(seconds)
            phases.append(("after", t0, time.monotonic(), {}))
        async with Client(c.endpoints, timeout=60) as client:
            lost = await wl.lost_writes(client)
        rows: list[list[object]] = []
        for name, start, end, result in phases:
            for op in ("put", "get"):
                s = wl.window(start, end, op)
                rows.append(
                    [
                        name,
                        f"{end - start:.1f}",
                        result.get("partitions_moved", ""),
                        f"{int(result['bytes_moved']) / 1e6:.1f}" if result else "",
                        op,
                        s.ops,
                        f"{100 * s.success_rate:.2f}",
                        f"{s.ops_per_s:.0f}",
                        f"{s.p50_ms:.1f}",
                        f"{s.p99_ms:.1f}",
                    ]
                )
        table(
            "client workload (8 writers, 8 strong readers) before, during and after scaling "
            f"3 -> 5 -> 3 nodes, 16 partitions, RF 3, 20k preloaded keys; "
            f"lost acknowledged writes: {len(lost)}, client errors: {len(wl.failures)}",
            [
                "phase",
                "s",
                "partitions",
                "MB moved",
                "op",
                "ops",
                "success %",
                "ops/s",
                "p50 ms",
                "p99 ms",
            ],
            rows,
        )
        for failure in wl.failures[:10]:
            print("  failure:", failure)
