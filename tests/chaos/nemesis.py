"""Fault scenarios: seeded schedules of faults, each recorded as a window for the availability
figures. A window runs from injection until the cluster has a leader for every partition
again after the fault is undone (recovery counts as "during the fault").

Fault lengths are chosen above the election timeout the chaos cluster runs with (at most
1.6 s), so a paused or cut-off leader is really replaced while it is gone.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from kvnode.client import NodeHttp
from kvnode.core import errors
from kvnode.local import scale_cluster
from kvnode.rebalance import executor as rebalance
from kvnode.rebalance.http_admin import HttpNodeAdmin

from tests.chaos.faults import Faults

log = logging.getLogger(__name__)

RECOVERY_TIMEOUT_S = 45.0
LEADERSHIP_TIMEOUT_S = 20.0


@dataclass(frozen=True, slots=True)
class Window:
    fault: str
    target: str
    start: float
    end: float


class Nemesis:
    def __init__(self, faults: Faults, rng: random.Random, until: float) -> None:
        self.faults = faults
        self.rng = rng
        self.until = until
        self.windows: list[Window] = []
        self.notes: list[str] = []
        self.moved = 0  # faults seen to move leadership away from their target

    def more(self) -> bool:
        return time.monotonic() < self.until

    async def quiet(self) -> None:
        await asyncio.sleep(self.rng.uniform(1.5, 3.0))

    def hold(self) -> float:
        return self.rng.uniform(2.5, 4.5)

    async def pick_leader(self) -> str:
        leaders = await self.faults.leaders()
        if not leaders:
            return self.rng.choice(self.faults.live_nodes())
        return leaders[self.rng.choice(sorted(leaders))]

    async def pick_follower(self) -> str:
        """A node that leads no partition if there is one, else one that leads the fewest
        (with more partitions than nodes, every node may lead some)."""
        leaders = list((await self.faults.leaders()).values())
        live = self.faults.live_nodes()
        fewest = min(leaders.count(n) for n in live)
        return self.rng.choice([n for n in live if leaders.count(n) == fewest])

    async def cycle(
        self,
        fault: str,
        target: str,
        inject: Callable[[], object],
        undo: Callable[[], object],
        *,
        verify: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Inject, hold the fault (checking it took effect), undo it, wait for recovery;
        record the window."""
        start = time.monotonic()
        log.info("fault %s on %s", fault, target)
        await asyncio.to_thread(inject)
        hold_until = time.monotonic() + self.hold()
        if verify is not None:
            await verify()
        await asyncio.sleep(max(0.0, hold_until - time.monotonic()))
        await asyncio.to_thread(undo)
        await self.recovered()
        self.windows.append(Window(fault, target, start, time.monotonic()))

    async def recovered(self) -> None:
        """Every fault undone (and any node that died restarted), every partition led."""
        await asyncio.to_thread(self.faults.heal_all)
        try:
            await self.faults.cluster.wait_ready(timeout=RECOVERY_TIMEOUT_S)
        except TimeoutError as exc:
            first = str(exc).splitlines()[0]
            self.notes.append(f"no recovery within {RECOVERY_TIMEOUT_S}s: {first}")
            raise

    async def leadership_left(self, node: str) -> None:
        """The fault really took ``node`` out: the others elect leaders for every partition
        it led, none of them ``node`` (bounded; a fault without effect fails the run)."""
        deadline = time.monotonic() + LEADERSHIP_TIMEOUT_S
        last: dict[int, str] = {}
        while time.monotonic() < deadline:
            last = await self.faults.leaders()
            partitions = self.faults.cluster.pmap.partitions
            if len(last) == partitions and node not in last.values():
                self.moved += 1
                return
            await asyncio.sleep(0.1)
        raise AssertionError(
            f"{node} still leads or partitions lack a leader {LEADERSHIP_TIMEOUT_S}s after it "
            f"was taken out: {last}"
        )

    async def cut_off(self, node: str) -> None:
        """An isolated node is unreachable from the clients and loses its leaderships."""
        url = self.faults.cluster.pmap.node(node).http_url
        http = NodeHttp()
        try:
            await http.call(url, "GET", "/healthz", timeout=1.0)
        except (errors.KvError, OSError):
            pass
        else:
            raise AssertionError(f"{node} still answers {url} while isolated")
        finally:
            await http.close()
        await self.leadership_left(node)

    # -- single faults -----------------------------------------------------------------------
    async def kill_leader(self) -> None:
        node = await self.pick_leader()
        f = self.faults
        await self.cycle(
            "kill -9 leader",
            node,
            lambda: f.kill(node),
            lambda: f.restart(node),
            verify=lambda: self.leadership_left(node),
        )

    async def kill_follower(self) -> None:
        """Drain the node first (``PUT /v1/admin/drain``: it hands every leadership away), so
        what dies is a pure follower; undrain it once it is back."""
        node = await self.pick_follower()
        f = self.faults
        pure = await self.drain(node, True)
        label = "kill -9 follower" if pure else "kill -9 follower (drain incomplete)"
        try:
            await self.cycle(label, node, lambda: f.kill(node), lambda: f.restart(node))
        finally:
            await self.drain(node, False)

    async def kill_any_follower(self) -> None:
        """``kill_follower`` without the drain (the rebalance moves leaderships itself)."""
        node = await self.pick_follower()
        f = self.faults
        await self.cycle("kill -9 follower", node, lambda: f.kill(node), lambda: f.restart(node))

    async def drain(self, node: str, drained: bool) -> bool:
        """Drain or undrain ``node``; whether it reports leading nothing (drain) / done."""
        admin = HttpNodeAdmin(timeout_s=20.0)
        try:
            report = await admin.set_drained(self.faults.cluster.pmap.node(node), drained)
        except (errors.KvError, OSError) as exc:
            self.notes.append(f"{'drain' if drained else 'undrain'} {node} failed: {exc}"[:200])
            return False
        finally:
            await admin.close()
        return bool(report.get("complete")) if drained else True

    async def pause_leader(self) -> None:
        node = await self.pick_leader()
        f = self.faults
        await self.cycle(
            "SIGSTOP leader",
            node,
            lambda: f.pause(node),
            lambda: f.resume(node),
            verify=lambda: self.leadership_left(node),
        )

    async def partition_one(self) -> None:
        node = await self.pick_leader()
        f = self.faults
        await self.cycle(
            "isolate node",
            node,
            lambda: f.isolate(node),
            lambda: f.heal(node),
            verify=lambda: self.cut_off(node),
        )

    async def restart_all(self) -> None:
        f = self.faults
        nodes = f.live_nodes()

        def kill_all() -> None:
            for n in nodes:
                f.kill(n)

        def start_all() -> None:
            for n in nodes:
                f.restart(n)

        await self.cycle("kill -9 every node", "all", kill_all, start_all)

    async def disk_full(self) -> None:
        """Fill node-1's disk; every other time also pause another node's leadership away
        meanwhile, so node-1 must persist a new term (Raft metadata) on a full disk too, not
        only apply writes."""
        assert self.faults.disk is not None
        f = self.faults
        elect = self.rng.random() < 0.5
        leaders = await f.leaders()
        others = sorted({n for n in leaders.values() if n != "node-1"})
        paused = self.rng.choice(others) if elect and others else None

        def fill() -> None:
            self.notes.append(f"disk filled with {f.fill_disk() >> 20} MiB")
            if paused is not None:
                f.pause(paused)

        def free() -> None:
            if paused is not None:
                f.resume(paused)
            f.free_disk()

        target = "node-1" if paused is None else f"node-1 (and SIGSTOP {paused})"
        await self.cycle("disk full", target, fill, free)


Step = Callable[[Nemesis], Awaitable[None]]


def _repeat(*steps: Step) -> Callable[[Nemesis], Awaitable[None]]:
    async def run(nem: Nemesis) -> None:
        while nem.more():
            await nem.quiet()
            if nem.more():
                await nem.rng.choice(steps)(nem)

    return run


async def rebalance_under_faults(nem: Nemesis) -> None:
    """Scale 3 -> 4 nodes with the executor while followers are killed and leaders paused;
    a rebalance step that fails on a fault is resumed (``scale`` with no count) until done."""
    faults = _repeat(Nemesis.kill_any_follower, Nemesis.pause_leader)
    cluster = nem.faults.cluster
    done = asyncio.Event()

    async def scale() -> None:
        await asyncio.sleep(1.0)
        target: int | None = 4
        while not done.is_set():
            try:
                result = await scale_cluster(
                    cluster, target, options=rebalance.Options(max_concurrent=2)
                )
            except Exception as exc:  # resumed; the note says why
                nem.notes.append(f"rebalance interrupted: {type(exc).__name__}: {exc}"[:300])
                target = None
                await asyncio.sleep(1.0)
                continue
            nem.notes.append(f"rebalance finished: {result}")
            done.set()

    task = asyncio.create_task(scale())
    await faults(nem)
    await nem.recovered()
    try:
        await asyncio.wait_for(done.wait(), timeout=120.0)
    finally:
        task.cancel()
    if not done.is_set():
        raise TimeoutError("the rebalance did not finish within 120 s after the faults")


SCENARIOS: dict[str, Callable[[Nemesis], Awaitable[None]]] = {
    "kill-leader": _repeat(Nemesis.kill_leader),
    "kill-follower": _repeat(Nemesis.kill_follower),
    "pause-leader": _repeat(Nemesis.pause_leader),
    "partition": _repeat(Nemesis.partition_one),
    "restart-all": _repeat(Nemesis.restart_all),
    "disk-full": _repeat(Nemesis.disk_full),
    "rebalance": rebalance_under_faults,
    "mixed": _repeat(
        Nemesis.kill_leader,
        Nemesis.kill_follower,
        Nemesis.pause_leader,
        Nemesis.partition_one,
        Nemesis.restart_all,
    ),
}
