"""``./dev bench http-path``: CPU per request of the HTTP layer alone (no Raft, no LevelDB).

Serves ``kvnode.http.app.make_app`` over the unit tests' in-memory ``FakeService`` in its own
process and drives 1 KiB PUTs and GETs at it with the compare generator, then reads the
server's CPU time (utime + stime from /proc) per request. CPU per request is what a GIL-bound
node pays for every request before Raft, and unlike throughput it barely moves with the
machine's load, so before/after numbers on a busy shared machine are comparable.

    ./dev bench http-path [--seconds 5] [--base-node DIR]

``--base-node DIR`` adds rows for the node package found in ``DIR`` (e.g. an older revision
extracted with ``git archive <rev> node | tar -x -C /tmp/base``), with both event loops.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
from collections.abc import Sequence

from bench import compare, loadgen, results, workloads
from bench.targets import RingkvNode
from tests.support.addresses import claim_address

PORT = 2398
LOOPS = ("uvloop", "asyncio")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def serve(host: str, port: int, loop: str) -> None:
    import prometheus_client
    from aiohttp import web
    from kvnode.http.app import ApiRunner, make_app

    from tests.unit.http.fake_service import FakeService

    async def run() -> None:
        app = make_app(FakeService(), registry=prometheus_client.CollectorRegistry())
        runner = ApiRunner(app, node_id="n0", access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        await asyncio.Event().wait()

    if loop == "uvloop":
        import uvloop

        uvloop.run(run())
    else:
        asyncio.run(run())


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(host: str, loop: str, node_dir: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([node_dir, ROOT]))
    return subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "serve", host, str(PORT), loop],
        env=env,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


async def measure(
    label: str, *, host: str, loop: str, node_dir: str, seconds: float, connections: int
) -> list[str]:
    proc = start_server(host, loop, node_dir)
    url = f"http://{host}:{PORT}"
    row = [label, loop]
    try:
        await compare._wait_http(url + "/healthz", timeout=30)
        for workload in ("write", "c"):
            cell = results.Cell(workload, "uniform", "strong", connections)
            make = compare.stream_factory(cell, records=100, inserts=workloads.InsertCounter(0))
            if workload == "c":  # the fake starts empty: write every key once first
                t = RingkvNode(url, connections=4, consistency="strong")
                for i in range(100):
                    await t.write(workloads.key_name(i), workloads.value_for("k", i))
                await t.close()
            target = RingkvNode(url, connections=connections, consistency="strong")
            cpu0 = _cpu_seconds(proc.pid)
            try:
                r = await loadgen.run_cell(target, cell, make_stream=make, seconds=seconds)
            finally:
                await target.close()
            cpu = _cpu_seconds(proc.pid) - cpu0
            ops = r.ok * (1 + loadgen.WARMUP_SHARE)  # CPU was read over warm-up too
            row += [f"{r.ops_per_s:.0f}", f"{1e6 * cpu / max(1.0, ops):.0f}", str(r.errors)]
    finally:
        proc.kill()
        proc.wait(timeout=10)
    return row


async def run(args: argparse.Namespace) -> None:
    claim = claim_address(nodes=1, partitions=1)
    variants = []
    for _ in range(args.rounds):  # interleaved, so a change in the machine's load hits all
        variants += [("this tree", loop, os.path.join(ROOT, "node")) for loop in LOOPS]
        if args.base_node:
            variants += [("base", loop, args.base_node) for loop in LOOPS]
    rows = []
    try:
        for label, loop, node_dir in variants:
            print(f"{label} {loop}: load average {compare.loadavg()}", flush=True)
            rows.append(
                await measure(
                    label,
                    host=claim.host,
                    loop=loop,
                    node_dir=node_dir,
                    seconds=args.seconds,
                    connections=args.connections,
                )
            )
    finally:
        claim.release()
    header = ["code", "loop", "put ops/s", "put CPU us/req", "errors"]
    header += ["get ops/s", "get CPU us/req", "errors"]
    widths = [max(len(x) for x in col) for col in zip(header, *rows, strict=False)]
    for line in [header, *rows]:
        print("| " + " | ".join(x.ljust(w) for x, w in zip(line, widths, strict=True)) + " |")


def main(argv: Sequence[str]) -> None:
    ap = argparse.ArgumentParser(prog="bench http-path", description=__doc__)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--base-node", help="a directory holding an older kvnode package")
    args = ap.parse_args(argv)
    asyncio.run(run(args))


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        sys.path.insert(0, ROOT)
        main(sys.argv[1:])
