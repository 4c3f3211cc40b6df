"""One chaos run: a fresh cluster (a namespace per node), the workload, one scenario's faults
for ``duration`` seconds, then heal, final strong reads, and the checks.

Must run inside the sandbox (``tests.chaos.sandbox``): it changes the network and mounts of
the namespaces it is in. Whatever happens, every node process, the namespaces' holders and
the tmpfs are gone when ``run_once`` returns; on a failure the history (JSON), the result
and the node logs are kept in a directory the result names.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import shutil
import signal
import time
from dataclasses import asdict, dataclass, field

from kvnode.local import LocalCluster

from tests.chaos.faults import ChaosCluster, Disk, Faults
from tests.chaos.nemesis import SCENARIOS, Nemesis, Window
from tests.chaos.netns import Fabric
from tests.chaos.workload import Workload, final_reads
from tests.support import linearizability as lin
from tests.support.clusters import FAST_RAFT

log = logging.getLogger(__name__)

NODES = 3
MAX_NODES = 4  # the rebalance scenario adds node-3
PARTITIONS = 4
DISK_MB = 48
READY_TIMEOUT_S = 60.0


@dataclass
class RunResult:
    scenario: str
    seed: int
    duration: float
    ops: int = 0  # operations checked (every op with an answer or an unknown outcome)
    ok_ops: int = 0
    unknown_ops: int = 0
    violations: list[str] = field(default_factory=list)  # not linearizable / eventual anomalies
    lost: list[str] = field(default_factory=list)
    undecided: list[str] = field(default_factory=list)  # keys whose search hit its budget
    faults: int = 0
    leader_moves: int = 0  # faults seen to move leadership off their target (verified)
    ok_per_s_faults: float = 0.0
    ok_per_s_calm: float = 0.0
    crashed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    kept: str | None = None
    eventual_as_strong: bool = False  # the checker self-test (see Workload)

    @property
    def passed(self) -> bool:
        return not (self.violations or self.lost or self.undecided or self.error)


def availability(
    ops: list[lin.Op], windows: list[Window], start: float, end: float
) -> tuple[float, float]:
    """ok operations per second that completed during fault windows, and outside them."""
    in_faults = sum(w.end - w.start for w in windows)
    calm = max(1e-9, (end - start) - in_faults)
    ok_times = [o.complete for o in ops if o.outcome == "ok" and start <= o.complete <= end]
    during = sum(1 for t in ok_times if any(w.start <= t < w.end for w in windows))
    return (during / in_faults if in_faults else 0.0), (len(ok_times) - during) / calm


def judge(
    result: RunResult, history: list[lin.Op], final: dict[str, tuple[str, int] | None]
) -> None:
    """Fill in the checks: linearizability of strong ops per key, eventual reads, lost writes."""
    by_key: dict[str, list[lin.Op]] = {}
    for o in history:
        by_key.setdefault(o.key, []).append(o)
    for _, ops in sorted(by_key.items()):
        try:
            verdict = lin.check(ops, budget=400_000)
        except lin.SearchBudgetExceeded as exc:
            result.undecided.append(str(exc))
            continue
        if not verdict.ok:
            result.violations.append(verdict.detail)
    result.violations += lin.eventual_violations(history)
    result.lost = lin.lost_writes(history, final)
    result.ops = sum(1 for o in history if o.outcome != "fail")
    result.ok_ops = sum(1 for o in history if o.outcome == "ok")
    result.unknown_ops = sum(1 for o in history if o.outcome == "unknown")


Final = dict[str, tuple[str, int] | None]


async def _drive(
    cluster: ChaosCluster, faults: Faults, result: RunResult, rng: random.Random
) -> tuple[list[lin.Op], Final, list[Window], float, float]:
    await cluster.wait_ready(timeout=READY_TIMEOUT_S)
    workload = Workload(
        cluster.endpoints, seed=result.seed, eventual_as_strong=result.eventual_as_strong
    )
    stop = asyncio.Event()
    clients = asyncio.create_task(workload.run(stop))
    start = time.monotonic()
    nemesis = Nemesis(faults, rng, until=start + result.duration)
    try:
        await asyncio.sleep(1.0)  # some calm traffic first
        await SCENARIOS[result.scenario](nemesis)
        await nemesis.recovered()
        await asyncio.sleep(1.0)  # and some after
    finally:
        end = time.monotonic()
        stop.set()
        await asyncio.wait_for(clients, timeout=60.0)
        result.notes += nemesis.notes
        result.faults = len(nemesis.windows)
        result.leader_moves = nemesis.moved
    await cluster.wait_ready(timeout=READY_TIMEOUT_S)
    final = await final_reads(
        cluster.endpoints, sorted(workload.used_keys), workload.recorder, timeout=60.0
    )
    return workload.recorder.ops, final, nemesis.windows, start, end


async def run_once(
    scenario: str, *, seed: int, duration: float, root: str, eventual_as_strong: bool = False
) -> RunResult:
    """One run of ``scenario``; never raises for a finding (it is in the result)."""
    result = RunResult(scenario, seed, duration, eventual_as_strong=eventual_as_strong)
    # a fresh directory per run: a kept failure is never overwritten by a later run
    base = os.path.join(root, f"{scenario}-seed{seed}-{time.strftime('%Y%m%d-%H%M%S')}")
    fabric = Fabric(nodes=MAX_NODES)
    disk: Disk | None = None
    cluster: ChaosCluster | None = None
    history: list[lin.Op] = []
    try:
        fabric.open()
        cluster = _create(base, fabric)
        if scenario == "disk-full":
            disk = Disk(cluster.data_dir("node-1"), size_mb=DISK_MB)
        faults = Faults(cluster, disk)
        cluster.start_all()
        history, final, windows, start, end = await _drive(
            cluster, faults, result, random.Random(seed)
        )
        result.crashed = faults.crashed
        judge(result, history, final)
        result.ok_per_s_faults, result.ok_per_s_calm = availability(history, windows, start, end)
    except Exception as exc:  # reported in the result, with the logs kept
        log.exception("run %s seed %d failed", scenario, seed)
        result.error = f"{type(exc).__name__}: {exc}"[:2000]
    finally:
        _teardown(cluster, disk, fabric)
    if not result.passed:
        result.kept = _keep(base, result, history)
    else:
        shutil.rmtree(base, ignore_errors=True)
    return result


def _create(base: str, fabric: Fabric) -> ChaosCluster:
    made = LocalCluster.create(
        base,
        nodes=NODES,
        partitions=PARTITIONS,
        replication=3,
        hosts=fabric.hosts,
        env=dict(FAST_RAFT),
    )
    cluster = ChaosCluster(base, made.pmap, env=made.env, hosts=made.hosts)
    cluster.fabric = fabric
    return cluster


def _teardown(cluster: ChaosCluster | None, disk: Disk | None, fabric: Fabric) -> None:
    if cluster is not None:
        with contextlib.suppress(Exception):
            for pid in [cluster.pid(n) for n in cluster.node_ids]:
                if pid is not None:  # a SIGSTOPped node still dies of SIGKILL; resume anyway
                    with contextlib.suppress(OSError):
                        os.killpg(pid, signal.SIGCONT)
        cluster.kill_everything()
    if disk is not None:
        disk.close()
    fabric.close()


def _keep(base: str, result: RunResult, history: list[lin.Op]) -> str:
    """Keep the history and the result next to the node logs (the cluster directory)."""
    os.makedirs(base, exist_ok=True)
    lin.save(os.path.join(base, "history.json"), history)
    with open(os.path.join(base, "result.json"), "w", encoding="utf-8") as f:
        json.dump(asdict(result), f, indent=1)
    return base
