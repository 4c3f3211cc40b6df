"""kill -9 during each step of a replica replacement recovers (real node processes).

Node 2's volume is wiped while it is stopped (as in ``test_lost_volume``), so on restart it
serves nothing and needs a reseed of every partition. The operator's repair is the executor on
a ``plan_replacement`` plan (per partition: REMOVE, SEED, ADD, CATCH_UP, VERIFY, with
``new == old``), under a small write load. For each step kind:

(a) the executor, in a process of its own, is SIGKILLed as soon as it reports that step of
    partition 0 in motion (the kill lands while the step runs or right after it persisted);
    a fresh executor resumes from the persisted state;
(b) for SEED, ADD and CATCH_UP, during the resumed run the node being reseeded is SIGKILLed
    once the executor starts that step of partition 1, and restarted.

Afterwards the plan is done, the replicas of each partition have equal digests, every
acknowledged write reads back with its value, and node 2 no longer needs a reseed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import sys
from typing import Any

import aiohttp
import pytest
from kvnode.core import plan as planning
from kvnode.core.model import PartitionMap
from kvnode.core.plan import Step, StepKind
from kvnode.rebalance import state as rebalance_state
from kvnode.rebalance.executor import Options, RebalanceProgress, Rebalancer
from kvnode.rebalance.http_admin import HttpNodeAdmin
from kvnode.rebalance.steps import describe

from tests.integration.test_lost_volume import get, restart
from tests.integration.test_rebalance import assert_preloaded, check_invariants, preload
from tests.support.clusters import ClusterHandle, eventually
from tests.support.workload import Workload

pytestmark = pytest.mark.integration

PARTITIONS = 2
PRELOAD = 60
LOST = "node-2"
# One partition at a time: partition 0's steps all run before partition 1's, so (a) and (b)
# each hit the step they name.
FAST = Options(max_concurrent=1, step_timeout_s=60.0, poll_interval_s=0.1, call_timeout_s=5.0)
STEPS = (StepKind.REMOVE, StepKind.SEED, StepKind.ADD, StepKind.CATCH_UP, StepKind.VERIFY)
NODE_KILL = (StepKind.SEED, StepKind.ADD, StepKind.CATCH_UP)

# The executor's process: resumes the persisted plan, prints each progress report as a line.
EXECUTOR = """
import asyncio, json, logging, sys
from kvnode.rebalance.executor import Options, Rebalancer
from kvnode.rebalance.http_admin import HttpNodeAdmin

logging.basicConfig(level=logging.INFO, stream=sys.stderr)

def report(p):
    print(json.dumps({"steps_done": p.steps_done, "in_motion": list(p.in_motion)}), flush=True)

async def main():
    admin = HttpNodeAdmin(timeout_s=15)
    options = Options(**json.loads(sys.argv[2]))
    try:
        await Rebalancer.load(sys.argv[1], admin=admin, options=options, on_progress=report).run()
    finally:
        await admin.close()

asyncio.run(main())
"""


async def past_bootstrap(h: ClusterHandle, admin: HttpNodeAdmin) -> PartitionMap:
    """Move the cluster past its epoch-1 bootstrap map (a wiped node at epoch 1 bootstraps)."""
    base = h.cluster.pmap
    epoch2 = PartitionMap.build(
        epoch=base.epoch + 1, nodes=base.nodes, replicas=base.replicas, replication=3
    )
    for n in epoch2.nodes:
        await admin.install_map(n, epoch2)
    h.cluster.set_map(epoch2)
    return epoch2


async def wipe(h: ClusterHandle, pmap: PartitionMap) -> None:
    """Stop LOST, delete its volume, start it: it must report every partition as needing a
    reseed."""
    c = h.cluster
    c.stop_node(LOST)
    shutil.rmtree(c.data_dir(LOST))
    c.start_node(LOST)

    async def refused() -> Any:
        try:
            status, body = await get(pmap.node(LOST).http_url + "/readyz")
        except aiohttp.ClientError:  # not listening yet
            return None
        return body if status == 503 and body.get("needs_reseed") else None

    ready = await eventually(refused, timeout=30, what=f"needs-reseed on the wiped {LOST}")
    assert ready["needs_reseed"] == list(range(PARTITIONS))


async def kill_executor_at(path: str, step: Step, log_path: str) -> int:
    """Run the executor in its own process; SIGKILL it once it reports ``step`` in motion.
    Returns how many steps of ``step.partition`` the state file holds as done afterwards."""
    args = [path, json.dumps(dataclasses.asdict(FAST))]
    logf = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", EXECUTOR, *args,
            stdout=asyncio.subprocess.PIPE, stderr=logf, start_new_session=True,
        )  # fmt: skip
    finally:
        os.close(logf)
    want = describe(step)
    seen: list[str] = []
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(90):
            while True:
                line = await proc.stdout.readline()
                if not line:
                    await proc.wait()
                    raise AssertionError(
                        f"the executor exited ({proc.returncode}) before {want!r}; reports "
                        f"{seen[-5:]}; log:\n{tail(log_path)}"
                    )
                seen.append(line.decode().strip())
                if want in json.loads(line)["in_motion"]:
                    break
        os.killpg(proc.pid, signal.SIGKILL)
    except TimeoutError as e:
        why = f"{want!r} never in motion; reports {seen[-5:]}:\n{tail(log_path)}"
        raise AssertionError(why) from e
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        async with asyncio.timeout(10):
            await proc.wait()
    state = rebalance_state.load(path)
    assert state is not None
    assert state.status is rebalance_state.Status.RUNNING, state
    return state.progress.steps_done(step.partition)


def tail(path: str, lines: int = 40) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return "".join(f.readlines()[-lines:])


async def resume(
    h: ClusterHandle, path: str, admin: HttpNodeAdmin, node_kill: Step | None
) -> tuple[PartitionMap, bool]:
    """Resume the persisted plan in this process; if ``node_kill``, kill -9 and restart LOST
    once that step is in motion (the step's first requests are in flight). Returns the final
    map and whether the node was killed."""
    killer: list[asyncio.Task[None]] = []

    def on_progress(p: RebalanceProgress) -> None:
        if node_kill is not None and not killer and describe(node_kill) in p.in_motion:
            killer.append(asyncio.create_task(restart(h, LOST)))

    rb = Rebalancer.load(path, admin=admin, options=FAST, on_progress=on_progress)
    final = await rb.run()
    for task in killer:
        await task
    assert rb.state.status is rebalance_state.Status.DONE, rb.state
    return final, bool(killer)


@pytest.mark.parametrize("kind", STEPS, ids=str)
async def test_kill_during_replacement_step_recovers(make_cluster, kind: StepKind) -> None:
    h = make_cluster(nodes=3, partitions=PARTITIONS, replication=3)
    await h.wait_ready(timeout=60)
    c = h.cluster
    admin = HttpNodeAdmin(timeout_s=15)
    try:
        pmap = await past_bootstrap(h, admin)
        await preload(h, PRELOAD, "pre-")
        async with Workload(c.endpoints, writers=2, readers=0, keys_per_writer=20) as wl:
            await wipe(h, pmap)
            plan = planning.plan_replacement(
                pmap.replicas, [(p, LOST, LOST) for p in range(PARTITIONS)]
            )
            path = os.path.join(c.base_dir, "replacement.json")
            Rebalancer.create(path, pmap, pmap, admin=admin, options=FAST, plan=plan)
            at = [s.kind for s in plan.moves[0].steps].index(kind)
            log_path = os.path.join(c.base_dir, "executor.log")
            done = await kill_executor_at(path, Step(0, kind, LOST), log_path)
            # Killed while the step ran, or right after it persisted.
            assert done in (at, at + 1), (done, at)
            node_kill = Step(1, kind, LOST) if kind in NODE_KILL else None
            final, killed = await resume(h, path, admin, node_kill)
            assert killed == (node_kill is not None)
        assert wl.acked, "the write load acknowledged nothing"
        assert final.replicas == pmap.replicas
        assert final.epoch > pmap.epoch
        c.set_map(final)
        await h.wait_ready(timeout=60)
        await check_invariants(c, final)
        async with h.client() as client:
            assert await wl.lost_writes(client) == []
        await assert_preloaded(h, PRELOAD, "pre-")
        status, body = await get(final.node(LOST).http_url + "/readyz")
        assert status == 200, body
        assert body["needs_reseed"] == []
    finally:
        await admin.close()
