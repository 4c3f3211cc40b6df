"""Scale loop (a benchmark, not CI): ``ringkv local scale`` 3 -> 5 -> 3, N times in a row, under a
checking client load; counts aborts (issue 8 asks for zero in twenty rounds).

    ./dev shell, then:
    python bench/scale_loop.py --iterations 20 [--partitions 8]
                               [--max-minutes 60] [--writers 3 --readers 3] [--plain-workers 2]

It runs the same ``kvnode.local.scale_cluster`` the CLI runs, on one local cluster of real node
processes. An aborted scale is counted with its reason, and the loop goes on from wherever the
abort left the cluster (an abort leaves every partition healthy at its old or new replicas).
After the last round every acknowledged write is read back. Beside the smart client,
``--plain-workers`` loops of a plain, never-retrying HTTP client (PUT then GET, a fresh connection
each) count every answer they get: issue 8 wants no 503 among them. One JSON line per scale, then a
summary line. Exit status 1 when any scale aborted, failed, or a write was lost.

The cluster runs on a loopback address of its own (``tests.support.addresses.claim_address``),
with the standard fixed ports below the kernel's ephemeral range (32768-60999).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from typing import Any

import aiohttp
from kvnode.client import Client
from kvnode.local import LocalCluster, scale_cluster
from kvnode.rebalance.executor import Options, RebalanceFailed

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests.support.addresses import claim_address  # needs the repository root on sys.path
from tests.support.workload import Workload

log = logging.getLogger("bench.scale_loop")


async def one_scale(c: LocalCluster, nodes: int, options: Options) -> dict[str, Any]:
    """One ``ringkv local scale nodes``: its result, or the abort/failure it ended in."""
    started = time.monotonic()
    try:
        result = await scale_cluster(c, nodes, options=options)
    except RebalanceFailed as e:
        return {
            "to": nodes,
            "status": "aborted",
            "reason": e.reason,
            "status_detail": e.status.value,
        }
    except Exception as e:
        log.exception("scale to %d failed", nodes)
        return {"to": nodes, "status": "error", "reason": f"{type(e).__name__}: {e}"}
    return {
        "to": nodes,
        "status": result["status"],
        "seconds": round(time.monotonic() - started, 1),
        "steps": result.get("steps"),
        "epoch": result.get("epoch"),
    }


async def plain_client(endpoints: list[str], w: int, counts: collections.Counter[str]) -> None:
    """PUT then GET one new key at a time, round-robin over ``endpoints``, never retrying."""
    conn = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=conn) as http:
        n = 0
        while True:
            n += 1
            url = f"{endpoints[n % len(endpoints)]}/v1/kv/plain-{w}-{n}"
            for method, kw in (("PUT", {"json": {"value": f"v{n}"}}), ("GET", {})):
                try:
                    timeout = aiohttp.ClientTimeout(total=20)
                    async with http.request(method, url, timeout=timeout, **kw) as resp:
                        await resp.read()
                        counts[f"{method} {resp.status}"] += 1
                        if resp.status != 200:
                            break
                except (aiohttp.ClientError, TimeoutError) as e:
                    counts[f"{method} {type(e).__name__}"] += 1
                    break


async def loop(args: argparse.Namespace) -> dict[str, Any]:
    base = tempfile.mkdtemp(prefix="ringkv-scale-loop-")
    claim = claim_address(partitions=args.partitions)  # own loopback address, ports < 32768
    c = LocalCluster.create(
        base,
        nodes=3,
        partitions=args.partitions,
        replication=3,
        host=claim.host,
        base_port=claim.base_port,
    )
    options = Options(max_concurrent=2)
    rounds: list[dict[str, Any]] = []
    lost: list[str] = []
    ok = False
    c.start_all()
    try:
        await c.wait_ready(timeout=120)
        stop_at = time.monotonic() + 60 * args.max_minutes
        plain: collections.Counter[str] = collections.Counter()
        raw = [
            asyncio.create_task(plain_client(c.endpoints[:3], w, plain))
            for w in range(args.plain_workers)
        ]
        async with Workload(c.endpoints[:3], writers=args.writers, readers=args.readers) as wl:
            for i in range(args.iterations):
                if time.monotonic() > stop_at:
                    log.warning("time budget spent after %d rounds", i)
                    break
                for nodes in (5, 3):
                    r = {"round": i + 1, **await one_scale(c, nodes, options)}
                    rounds.append(r)
                    print(json.dumps(r), flush=True)
        for t in raw:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t
        async with Client(c.endpoints[:3], timeout=30) as client:
            lost = await wl.lost_writes(client)
        ok = True
    finally:
        c.kill_everything()  # drained nodes outside the final map included
        claim.release()
        if ok:
            shutil.rmtree(base, ignore_errors=True)
        else:
            print(f"scale loop failed; node logs kept in {base}", file=sys.stderr)
    return summarize(rounds, wl, lost, plain)


def summarize(
    rounds: list[dict[str, Any]], wl: Workload, lost: list[str], plain: collections.Counter[str]
) -> dict[str, Any]:
    done = [r for r in rounds if r["status"] == "done"]
    return {
        "rounds": len({r["round"] for r in rounds}),
        "scales": len(rounds),
        "done": len(done),
        "aborted": sum(1 for r in rounds if r["status"] == "aborted"),
        "errors": sum(1 for r in rounds if r["status"] == "error"),
        "mean_scale_s": round(sum(r["seconds"] for r in done) / len(done), 1) if done else None,
        "client_ops": len(wl.samples),
        "client_failures": len(wl.failures),
        "acked_writes": len(wl.acked),
        "lost_writes": len(lost),
        "plain_client": dict(sorted(plain.items())),
        "reasons": [r["reason"] for r in rounds if r["status"] != "done"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--iterations", type=int, default=20)
    p.add_argument("--partitions", type=int, default=8)
    p.add_argument("--max-minutes", type=float, default=60.0)
    p.add_argument("--writers", type=int, default=3)
    p.add_argument("--readers", type=int, default=3)
    p.add_argument("--plain-workers", type=int, default=2)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    summary = asyncio.run(loop(args))
    print(json.dumps({"summary": summary}), flush=True)
    bad = summary["aborted"] or summary["errors"] or summary["lost_writes"]
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
