"""``./dev bench compare``: the same YCSB-style workloads against ringkv and etcd in one run.

ringkv: a 3-node ``LocalCluster`` (16 partitions, RF 3, ``--durability``) on a loopback
address of its own, driven through one node (``ringkv-node``, as behind a Service) and through
the smart client (``ringkv-client``). etcd: 3 members of Debian's ``etcd`` (fsync on, its
defaults) through the v3 HTTP/JSON gateway of the leader (``bench/etcd.py``). The systems run
one after the other (the idle one would otherwise take CPU from the measured one); each
preloads ``--records`` keys of 1 KiB, then runs every cell for ``--seconds`` after a short
warm-up. The table gives, per cell and system, ops/s, p50/p99/p99.9, errors and the ratios to
etcd, plus the generator's CPU (``gen cpu``, cores): ``--echo`` first measures what the
generator drives against a trivial aiohttp server, to show it is not the limit. The machine's
load average is printed before and after each phase: on a shared machine numbers are
indicative only.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import logging
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace

import aiohttp
import orjson
from kvnode.client import BatchOp, Client
from kvnode.core import errors
from kvnode.local import LocalCluster

from bench import etcd, loadgen, plot, results, workloads
from bench.targets import EtcdGateway, RingkvNode, RingkvSmart, Target
from tests.support.addresses import claim_address

log = logging.getLogger("bench.compare")

SYSTEMS = ("etcd", "ringkv-node", "ringkv-client")
PRELOAD_BATCH = 64
PRELOAD_CONCURRENCY = 8
ECHO_PORT = 2399


@dataclass(frozen=True, slots=True)
class Plan:
    workloads: tuple[str, ...] = ("load", "a", "b", "c", "write")
    distributions: tuple[str, ...] = ("uniform", "zipfian")
    connections: tuple[int, ...] = (1, 16, 64)
    consistencies: tuple[str, ...] = ("strong",)
    systems: tuple[str, ...] = SYSTEMS
    seconds: float = 2.0
    records: int = 10_000
    durability: str = "fsync"
    partitions: int = 16
    seed: int = 1
    node_env: tuple[str, ...] = ()  # extra KVNODE_*=value settings of the ringkv nodes


QUICK = Plan(
    workloads=("load", "a", "c", "write"),
    distributions=("uniform",),
    records=2_000,
)


def cells(plan: Plan) -> list[results.Cell]:
    """Every cell of the plan: load has no key choice and no reads, write-only no reads."""
    out = []
    for name in plan.workloads:
        w = workloads.WORKLOADS[name]
        dists = ("-",) if w.insert else plan.distributions
        levels = plan.consistencies if w.reads else ("-",)
        for dist in dists:
            for level in levels:
                for conns in plan.connections:
                    out.append(results.Cell(name, dist, level, conns))
    return out


def stream_factory(
    cell: results.Cell, *, records: int, inserts: workloads.InsertCounter
) -> Callable[[random.Random], workloads.OpStream]:
    w = workloads.WORKLOADS[cell.workload]
    chooser = workloads.KeyChooser(
        "uniform" if cell.distribution == "-" else cell.distribution, records
    )
    return lambda rng: workloads.OpStream(w, chooser, rng=rng, inserts=inserts)


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


async def run_system(
    name: str,
    plan: Plan,
    make_target: Callable[[str, results.Cell], Target],
    *,
    system_names: Sequence[str],
) -> list[results.CellResult]:
    """Every cell for each of ``system_names`` (targets of one running system)."""
    out = []
    inserts = workloads.InsertCounter(plan.records)
    for cell in cells(plan):
        make_stream = stream_factory(cell, records=plan.records, inserts=inserts)
        for system in system_names:
            target = make_target(system, cell)
            try:
                r = await loadgen.run_cell(
                    target, cell, make_stream=make_stream, seconds=plan.seconds, seed=plan.seed
                )
            finally:
                await target.close()
            log.info(
                "%s %s: %.0f ops/s p99 %.1f ms errors %d %s",
                system,
                cell.label(),
                r.ops_per_s,
                r.p99 * 1000,
                r.errors,
                r.error_kinds or "",
            )
            out.append(r)
    return out


# ------------------------------------------------------------ etcd


async def etcd_phase(plan: Plan) -> list[results.CellResult]:
    async with etcd.etcd_cluster() as cluster:
        await preload_etcd(cluster.leader_url, plan.records)

        def make(system: str, cell: results.Cell) -> Target:
            return EtcdGateway(
                cluster.leader_url, connections=cell.connections, consistency=cell.consistency
            )

        return await run_system("etcd", plan, make, system_names=["etcd"])


async def preload_etcd(url: str, records: int) -> None:
    """``records`` keys through transactions of ``PRELOAD_BATCH`` puts (etcd allows 128)."""

    def b64(s: str) -> str:
        return base64.b64encode(s.encode()).decode()

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s:

        async def batch(start: int) -> None:
            ops = []
            for i in range(start, min(records, start + PRELOAD_BATCH)):
                key = workloads.key_name(i)
                value = workloads.value_for(key, 0)
                ops.append({"requestPut": {"key": b64(key), "value": b64(value)}})
            async with s.post(url + "/v3/kv/txn", data=orjson.dumps({"success": ops})) as resp:
                if resp.status != 200:
                    raise RuntimeError(f"etcd preload failed: {resp.status} {await resp.text()}")

        await _bounded(batch, range(0, records, PRELOAD_BATCH))


# ------------------------------------------------------------ ringkv


@asynccontextmanager
async def ringkv_cluster(plan: Plan) -> AsyncIterator[LocalCluster]:
    base = tempfile.mkdtemp(prefix="ringkv-bench-compare-")
    claim = claim_address(partitions=plan.partitions)
    cluster = LocalCluster.create(
        base,
        nodes=3,
        partitions=plan.partitions,
        replication=3,
        host=claim.host,
        base_port=claim.base_port,
        env={"KVNODE_DURABILITY": plan.durability, **dict(e.split("=", 1) for e in plan.node_env)},
    )
    try:
        cluster.start_all()
        await cluster.wait_ready(timeout=90)
        yield cluster
    finally:
        cluster.kill_everything()
        claim.release()
        shutil.rmtree(base, ignore_errors=True)


async def ringkv_phase(plan: Plan) -> list[results.CellResult]:
    names = [s for s in plan.systems if s.startswith("ringkv")]
    async with ringkv_cluster(plan) as cluster:
        await preload_ringkv(cluster.endpoints, plan.records)
        entry = cluster.endpoints[0]

        def make(system: str, cell: results.Cell) -> Target:
            level = "strong" if cell.consistency == "-" else cell.consistency
            if system == "ringkv-node":
                return RingkvNode(entry, connections=cell.connections, consistency=level)
            return RingkvSmart(cluster.endpoints, consistency=level)

        return await run_system("ringkv", plan, make, system_names=names)


async def preload_ringkv(endpoints: list[str], records: int) -> None:
    # A batch right after the start can outlast the client's default 2 s attempt (journals and
    # leaders still settling); its values are fixed, so sending it again after an unknown
    # outcome is harmless: within 120 s per batch, then the error stands.
    async with Client(endpoints, timeout=60, attempt_timeout=30) as c:

        async def batch(start: int) -> None:
            ops = [
                BatchOp.put(workloads.key_name(i), workloads.value_for(workloads.key_name(i), 0))
                for i in range(start, min(records, start + PRELOAD_BATCH))
            ]
            deadline = time.monotonic() + 120
            while True:
                try:
                    (await c.batch(ops)).raise_for_error()
                    return
                except errors.UnknownOutcome:
                    if time.monotonic() > deadline:
                        raise

        await _bounded(batch, range(0, records, PRELOAD_BATCH))


async def _bounded(fn: Callable[[int], object], starts: range) -> None:
    sem = asyncio.Semaphore(PRELOAD_CONCURRENCY)

    async def one(start: int) -> None:
        async with sem:
            await fn(start)  # type: ignore[misc]

    await asyncio.gather(*(one(s) for s in starts))


# ------------------------------------------------------------ generator ceiling


def start_echo(host: str) -> subprocess.Popen[bytes]:
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "echo.py")
    return subprocess.Popen(
        [sys.executable, script, host, str(ECHO_PORT)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


async def echo_ceiling(seconds: float, connections: int = 64) -> results.CellResult:
    """The generator against ``bench/echo.py`` (1 KiB PUTs, ``connections`` in flight)."""
    claim = claim_address(nodes=1, partitions=1)
    proc = start_echo(claim.host)
    url = f"http://{claim.host}:{ECHO_PORT}"
    try:
        await _wait_http(url + "/ready", timeout=20)
        cell = results.Cell("write", "uniform", "-", connections)
        target = RingkvNode(url, connections=connections, consistency="strong")
        try:
            make = stream_factory(cell, records=1000, inserts=workloads.InsertCounter(0))
            r = await loadgen.run_cell(target, cell, make_stream=make, seconds=seconds)
        finally:
            await target.close()
        return replace(r, system="echo")
    finally:
        proc.kill()
        proc.wait(timeout=10)
        claim.release()


async def _wait_http(url: str, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as s:
        while time.monotonic() < deadline:
            try:
                async with s.get(url) as resp:
                    if resp.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


# ------------------------------------------------------------ command line


async def compare(plan: Plan, *, echo: bool) -> list[results.CellResult]:
    """Every phase of one run; prints the load average around each phase."""
    out: list[results.CellResult] = []
    if echo:
        before = loadavg()
        r = await echo_ceiling(plan.seconds)
        per_op = r.client_cpu / r.ops_per_s if r.ops_per_s else float("nan")
        print(
            f"generator ceiling (1 KiB PUTs at 64 connections against a trivial aiohttp "
            f"server): {r.ops_per_s:.0f} ops/s, p99 {r.p99 * 1000:.1f} ms, generator CPU "
            f"{r.client_cpu:.2f} cores = {per_op * 1e6:.0f} us per op, i.e. about "
            f"{1 / per_op:.0f} ops/s per core of generator (load average {before} -> "
            f"{loadavg()})",
            flush=True,
        )
    if "etcd" in plan.systems:
        before = loadavg()
        out += await etcd_phase(plan)
        print(f"etcd phase: load average {before} -> {loadavg()}", flush=True)
    if any(s.startswith("ringkv") for s in plan.systems):
        before = loadavg()
        out += await ringkv_phase(plan)
        print(f"ringkv phase: load average {before} -> {loadavg()}", flush=True)
    return out


def order_for_table(found: Sequence[results.CellResult]) -> list[results.CellResult]:
    """Results grouped by cell (etcd first), in the plan's cell order."""
    rank = {s: i for i, s in enumerate(SYSTEMS)}
    cell_rank: dict[results.Cell, int] = {}
    for r in found:
        cell_rank.setdefault(r.cell, len(cell_rank))
    return sorted(found, key=lambda r: (cell_rank[r.cell], rank.get(r.system, 99)))


def _csv(kind: Callable[[str], object]) -> Callable[[str], tuple[object, ...]]:
    return lambda raw: tuple(kind(x.strip()) for x in raw.split(",") if x.strip())


def parse_args(argv: Sequence[str]) -> tuple[Plan, bool, argparse.Namespace]:
    ap = argparse.ArgumentParser(prog="bench compare", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="load,a,c,write; uniform; 2,000 keys")
    ap.add_argument("--workloads", type=_csv(str), help="of load,a,b,c,write")
    ap.add_argument("--distributions", type=_csv(str), help="of uniform,zipfian")
    ap.add_argument("--connections", type=_csv(int), help="e.g. 1,16,64")
    ap.add_argument("--reads", type=_csv(str), help="of strong,eventual (default strong)")
    ap.add_argument("--systems", type=_csv(str), help=f"of {','.join(SYSTEMS)}")
    ap.add_argument("--seconds", type=float, help="measured seconds per cell (default 2)")
    ap.add_argument("--records", type=int, help="preloaded keys")
    ap.add_argument("--durability", choices=["process", "fsync"], default="fsync")
    ap.add_argument(
        "--node-env",
        action="append",
        default=[],
        metavar="KVNODE_X=VALUE",
        help="a setting of every ringkv node, e.g. KVNODE_FOLLOWER_READS=off (repeatable)",
    )
    ap.add_argument("--no-echo", action="store_true", help="skip the generator ceiling")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--png", help="draw ops/s and p99 per second to this file (matplotlib)")
    args = ap.parse_args(argv)
    plan = QUICK if args.quick else Plan()
    overrides = {
        "workloads": args.workloads,
        "distributions": args.distributions,
        "connections": args.connections,
        "consistencies": args.reads,
        "systems": args.systems,
        "seconds": args.seconds,
        "records": args.records,
    }
    plan = replace(
        plan,
        durability=args.durability,
        node_env=tuple(args.node_env),
        **{k: v for k, v in overrides.items() if v},
    )
    problems = [w for w in plan.workloads if w not in workloads.WORKLOADS]
    problems += [d for d in plan.distributions if d not in workloads.DISTRIBUTIONS]
    problems += [c for c in plan.consistencies if c not in ("strong", "eventual")]
    problems += [s for s in plan.systems if s not in SYSTEMS]
    problems += [e for e in plan.node_env if not e.startswith("KVNODE_") or "=" not in e]
    if problems or plan.seconds <= 0 or plan.records < 2:
        ap.error(f"unknown or invalid values: {problems or 'seconds/records'}")
    return plan, not args.no_echo, args


def main(argv: Sequence[str]) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    plan, echo, args = parse_args(argv)
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover - a runtime dependency on Linux
        pass
    print(f"bench compare: {plan} (load average {loadavg()})", flush=True)
    found = asyncio.run(compare(plan, echo=echo))
    title = (
        f"bench compare: 3 nodes each, ringkv {plan.partitions} partitions RF 3 "
        f"durability={plan.durability}, etcd fsync (defaults), {plan.records} keys of 1 KiB, "
        f"{plan.seconds:g} s per cell" + "".join(f", {e}" for e in plan.node_env)
    )
    print(results.render(order_for_table(found), title=title), flush=True)
    if args.json:
        with open(args.json, "wb") as f:
            f.write(orjson.dumps([_to_json(r) for r in found], option=orjson.OPT_INDENT_2))
    if args.png:
        plot.draw(order_for_table(found), args.png, title=title)
        print(f"wrote {args.png}", flush=True)


def _to_json(r: results.CellResult) -> dict[str, object]:
    return {
        "system": r.system,
        "cell": r.cell.label(),
        "ops_per_s": r.ops_per_s,
        "p50_ms": r.p50 * 1000,
        "p99_ms": r.p99 * 1000,
        "p999_ms": r.p999 * 1000,
        "errors": r.error_kinds,
        "client_cpu": r.client_cpu,
        "per_second": list(r.per_second),
        "per_second_p99_ms": [x * 1000 for x in r.per_second_p99],
    }
