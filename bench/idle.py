"""What an idle cluster costs: CPU and memory of each node process with no client traffic.

    ./dev shell, then: python bench/idle.py --partitions 16,64,256,1000 --seconds 20 --settle 20

Per partition count, a 3-node ringkv (RF 3, the node's default Raft timing) on a loopback address
of its own; once every partition has a leader and a settling pause has passed, the node
processes' CPU (user + system, from /proc) is taken over ``--seconds`` and their resident memory
at the end, with how many replicas were quiesced then (node/DESIGN.md, "Idle partitions").
Nothing else talks to the cluster meanwhile. ``--quiesce-idle-s 0`` measures with quiescing off.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from kvnode.local import LocalCluster

from tests.support.addresses import claim_address  # needs the repository root on sys.path

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def quiesced_replicas(url: str) -> tuple[int, int]:
    """(quiesced, hosted) replicas of the node at ``url``."""
    with urllib.request.urlopen(f"{url}/v1/admin/partitions", timeout=10) as answer:
        parts = json.load(answer)["partitions"]
    return sum(1 for p in parts if p.get("quiesced")), len(parts)


async def measure(partitions: int, seconds: float, settle: float, quiesce_idle_s: str) -> str:
    base = tempfile.mkdtemp(prefix="ringkv-bench-idle-")
    claim = claim_address(partitions=partitions)
    env = {"KVNODE_QUIESCE_IDLE_S": quiesce_idle_s} if quiesce_idle_s else None
    cluster = LocalCluster.create(
        base,
        nodes=3,
        partitions=partitions,
        replication=3,
        host=claim.host,
        base_port=claim.base_port,
        env=env,
    )
    try:
        cluster.start_all()
        await cluster.wait_ready(timeout=300)
        await asyncio.sleep(settle)  # let start-up elections and compaction settle
        pids = [cluster.pid(n) for n in cluster.node_ids]
        assert all(pids), pids
        before = [cpu_seconds(p) for p in pids]  # type: ignore[arg-type]
        t0 = time.monotonic()
        await asyncio.sleep(seconds)
        wall = time.monotonic() - t0
        cores = [(cpu_seconds(p) - b) / wall for p, b in zip(pids, before, strict=True)]  # type: ignore[arg-type]
        rss = [rss_mib(p) for p in pids]  # type: ignore[arg-type]
        counts = [quiesced_replicas(n.http_url) for n in cluster.pmap.nodes]
    finally:
        cluster.kill_everything()
        claim.release()
        shutil.rmtree(base, ignore_errors=True)
    per_node = " / ".join(f"{c:.3f}" for c in cores)
    mem = " / ".join(f"{m:.0f}" for m in rss)
    quiet = f"{sum(q for q, _ in counts)}/{sum(h for _, h in counts)}"
    load = os.getloadavg()[0]
    return f"| {partitions} | {sum(cores):.3f} | {per_node} | {mem} | {quiet} | {load:.1f} |"


async def main(args: argparse.Namespace) -> None:
    print(
        "| partitions | cores, 3 nodes | cores per node | RSS MiB per node | quiesced | load avg |"
    )
    print("|---|---|---|---|---|---|")
    for p in args.partitions:
        print(await measure(p, args.seconds, args.settle, args.quiesce_idle_s), flush=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument(
        "--partitions", type=lambda s: [int(x) for x in s.split(",")], default=[16, 64, 256]
    )
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--settle", type=float, default=8.0)
    ap.add_argument(
        "--quiesce-idle-s", default="", help="KVNODE_QUIESCE_IDLE_S for the nodes (0: off)"
    )
    asyncio.run(main(ap.parse_args()))
