"""``./dev bench profile``: py-spy profile of one node's request path under load.

Starts a 3-node cluster (16 partitions, RF 3), preloads keys, then for each of ``put`` and
``get`` (strong) drives ``--connections`` closed-loop connections at node 0 for ``--seconds``
while ``py-spy record`` samples node 0 (all threads: the event loop and the Raft ticker).
Prints the hottest frames by own time and by inclusive time from py-spy's collapsed stacks,
sampled with ``--gil`` (only the thread holding the GIL): a node is one GIL-bound process, so
that is the time that limits it, and idle waits in poll/epoll do not count.
Needs ``py-spy`` on PATH (``pip install py-spy``; not a project dependency).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import tempfile
from collections import Counter
from collections.abc import Sequence

from bench import compare, loadgen, results, workloads
from bench.targets import RingkvNode

TOP = 18


def summarize(collapsed: str, *, top: int = TOP) -> tuple[list[tuple[str, float]], ...]:
    """(own, inclusive) shares of samples per frame from py-spy's ``--format raw`` output."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [f for f in stack.split(";") if not f.startswith("process ")]
        if not frames:
            continue
        total += n
        own[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    if total == 0:
        return [], []
    return (
        [(f, n / total) for f, n in own.most_common(top)],
        [(f, n / total) for f, n in incl.most_common(top * 4) if not _outer(f)][:top],
    )


def _outer(frame: str) -> bool:
    """Frames every sample passes through (entry points, the loop, the ticker loop)."""
    return any(
        x in frame
        for x in ("<module>", "main (", "run_forever", "_run_once", "asyncio/runners", "Thread")
    )


def start_spy(pid: int, out: str, seconds: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["py-spy", "record", "--gil", "--format", "raw", "-r", "250", "-d", str(int(seconds)),
         "-p", str(pid), "-o", out, "--nonblocking"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip


async def profile(plan: compare.Plan, *, connections: int, seconds: float, out_dir: str) -> None:
    async with compare.ringkv_cluster(plan) as cluster:
        await compare.preload_ringkv(cluster.endpoints, plan.records)
        pid = cluster.pid(cluster.node_ids[0])
        assert pid is not None
        for name, workload in (("put", "write"), ("get", "c")):
            cell = results.Cell(workload, "uniform", "strong", connections)
            out = os.path.join(out_dir, f"{name}.txt")
            spy = start_spy(pid, out, seconds + 1)
            cpu0 = _cpu_seconds(pid)
            target = RingkvNode(cluster.endpoints[0], connections=connections, consistency="strong")
            try:
                make = compare.stream_factory(
                    cell, records=plan.records, inserts=workloads.InsertCounter(plan.records)
                )
                r = await loadgen.run_cell(target, cell, make_stream=make, seconds=seconds)
            finally:
                await target.close()
            cpu = _cpu_seconds(pid) - cpu0
            _, err = await asyncio.to_thread(spy.communicate, timeout=seconds + 60)
            share = 1 + loadgen.WARMUP_SHARE  # CPU was read over warm-up + measurement
            per_request_ms = 1000 * cpu / max(1.0, r.ok * share)
            print(
                f"\n== {name}: {r.ops_per_s:.0f} ops/s, p99 {r.p99 * 1000:.1f} ms, node 0 CPU "
                f"{cpu / (r.seconds * share):.2f} cores, {per_request_ms:.2f} ms per request "
                "(incl. py-spy's sampling and idle Raft work) =="
            )
            if spy.returncode != 0:
                print(f"py-spy failed: {err.decode(errors='replace')[-2000:]}")
                continue
            own, incl = summarize(await asyncio.to_thread(_read, out))
            print("own time:")
            for frame, share in own:
                print(f"  {share * 100:5.1f}%  {frame}")
            print("inclusive (kvnode frames):")
            for frame, share in incl:
                print(f"  {share * 100:5.1f}%  {frame}")


def main(argv: Sequence[str]) -> None:
    ap = argparse.ArgumentParser(prog="bench profile", description=__doc__)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--records", type=int, default=2000)
    ap.add_argument("--durability", choices=["process", "fsync"], default="process")
    ap.add_argument("--keep", help="directory to keep the collapsed stacks in")
    args = ap.parse_args(argv)
    if shutil.which("py-spy") is None:
        ap.error("py-spy is not on PATH (pip install py-spy)")
    plan = compare.Plan(records=args.records, durability=args.durability)
    out_dir = args.keep or tempfile.mkdtemp(prefix="ringkv-profile-")
    os.makedirs(out_dir, exist_ok=True)
    asyncio.run(profile(plan, connections=args.connections, seconds=args.seconds, out_dir=out_dir))
    if not args.keep:
        shutil.rmtree(out_dir, ignore_errors=True)


def _cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (all threads) from /proc, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()
