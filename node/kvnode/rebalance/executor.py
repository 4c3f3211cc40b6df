"""The rebalance executor: runs a migration plan against live nodes, resumably, abortably.

Order of effects, and why (each is a decision a restarted executor relies on):

1. ``create`` persists base, target and plan before anything happens; ``load`` resumes from it.
2. ``run`` installs ``map_at(progress)`` first (the announce map on a fresh run; a no-op on a
   resume), then runs ``next_steps`` concurrently. After a step succeeds: advance progress,
   persist, THEN install the new map, so no node ever learns a map the state file cannot
   reproduce. Installs are best effort per node; a node that does not answer is retried in the
   background and at the end, and never gets an older map after a newer one.
3. A failed step (non-retriable error, data divergence, deadline) aborts the run: partitions in
   motion with no REMOVE done are rolled back to their base members (the joiner leaves the
   group and its data is dropped); the others are rolled forward, since a member already left.
   The resulting map gets an epoch above every earlier one. An abort resumes from the file too.
4. At the end the final map (the target, ``final_epoch``) must reach every target node.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any

from kvnode.core import errors, transition
from kvnode.core import plan as planning
from kvnode.core.model import NodeInfo, PartitionMap
from kvnode.rebalance import admin as admin_api
from kvnode.rebalance import publisher
from kvnode.rebalance import state as state_file
from kvnode.rebalance import steps as step_runner
from kvnode.rebalance.state import RebalanceState, StateStore, Status

log = logging.getLogger(__name__)
Options = step_runner.Options


@dataclass(frozen=True, slots=True)
class RebalanceProgress:
    """What status pages and the CLI show while a rebalance runs."""

    status: str
    partitions_done: int
    partitions_total: int
    steps_done: int
    steps_total: int
    bytes_moved: int
    elapsed_s: float
    eta_s: float | None  # None until a step finished
    in_motion: tuple[str, ...]  # the steps running now, described


ProgressCallback = Callable[[RebalanceProgress], None]


class RebalanceFailed(Exception):
    """The run stopped: ``status`` is "aborted" (rolled back/forward cleanly), "failed" (the abort
    could not finish: resume it with ``load`` + ``abort``) or "running" (the final map did not
    reach every node: resume with ``load`` + ``run``)."""

    def __init__(self, reason: str, *, status: Status, progress: RebalanceProgress) -> None:
        super().__init__(f"rebalance {status.value}: {reason}")
        self.reason = reason
        self.status = status
        self.progress = progress


class UnfinishedRebalance(Exception):
    """``create`` found a rebalance at that path that is neither done nor aborted."""


class Rebalancer:
    """Drives one persisted rebalance; see the module docstring for the order of effects."""

    def __init__(
        self,
        state_path: str | StateStore,
        state: RebalanceState,
        *,
        admin: admin_api.NodeAdmin,
        options: Options,
        on_progress: ProgressCallback | None,
    ) -> None:
        self._store = _store(state_path)
        self._state = state
        self._opt = options
        self._on_progress = on_progress
        self._nodes = {n.node_id: n for n in transition.union_nodes(state.base, state.target)}
        self._publisher = publisher.MapPublisher(admin, call_timeout_s=options.call_timeout_s)
        self._runner = step_runner.StepRunner(
            admin,
            self._nodes,
            routing=self._routing,
            install=self._publisher.install,
            options=options,
        )
        self._admin = admin
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._running: dict[int, planning.Step] = {}
        self._partition_started: dict[int, float] = {}
        self._abort_task: asyncio.Task[PartitionMap] | None = None

    # -- construction ----------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        state_path: str | StateStore,
        current: PartitionMap,
        target: PartitionMap,
        *,
        admin: admin_api.NodeAdmin,
        options: Options | None = None,
        on_progress: ProgressCallback | None = None,
        plan: planning.MigrationPlan | None = None,
    ) -> Rebalancer:
        """Plan ``current`` -> ``target`` and persist it at ``state_path`` (a file path or a
        ``StateStore``). Refuses to overwrite a rebalance that is not finished
        (``UnfinishedRebalance``). ``plan``: run this plan instead of ``plan_migration``'s
        (a replica replacement, ``planning.plan_replacement``); it must lead from ``current``
        to ``target``."""
        store = _store(state_path)
        old = store.load()
        if old is not None and not old.status.finished:
            summary = planning.progress_summary(old.plan, old.progress)
            raise UnfinishedRebalance(
                f"{store} holds an unfinished rebalance (status {old.status.value}, "
                f"{summary.steps_done}/{summary.steps_total} steps): resume or abort it first"
            )
        current.validate()
        target.validate()
        if plan is None:
            plan = planning.plan_migration(current.replicas, target.replicas)
        state = RebalanceState(Status.RUNNING, current, target, plan, started_at=time.time())
        store.save(state)
        log.info(
            "rebalance planned: epoch %d, %d partitions to move in %d steps, state %s",
            current.epoch,
            len(plan.moves),
            plan.total_steps,
            store,
        )
        return cls(store, state, admin=admin, options=options or Options(), on_progress=on_progress)

    @classmethod
    def load(
        cls,
        state_path: str | StateStore,
        *,
        admin: admin_api.NodeAdmin,
        options: Options | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> Rebalancer:
        """Resume the rebalance persisted at ``state_path`` (ValueError if it is unreadable)."""
        store = _store(state_path)
        state = store.load()
        if state is None:
            raise FileNotFoundError(f"no rebalance state at {store}")
        return cls(store, state, admin=admin, options=options or Options(), on_progress=on_progress)

    # -- views -----------------------------------------------------------------------------------
    @property
    def state(self) -> RebalanceState:
        return self._state

    @property
    def progress(self) -> RebalanceProgress:
        st = self._state
        summary = planning.progress_summary(st.plan, st.progress)
        eta = None
        if summary.steps_done:
            per_step = st.step_seconds / summary.steps_done
            left = summary.steps_total - summary.steps_done
            eta = left * per_step / self._opt.max_concurrent
        return RebalanceProgress(
            status=st.status.value,
            partitions_done=summary.partitions_done,
            partitions_total=summary.partitions_total,
            steps_done=summary.steps_done,
            steps_total=summary.steps_total,
            bytes_moved=st.bytes_moved,
            elapsed_s=max(0.0, time.time() - st.started_at),
            eta_s=eta,
            in_motion=tuple(step_runner.describe(s) for _, s in sorted(self._running.items())),
        )

    def _routing(self) -> PartitionMap:
        st = self._state
        return transition.map_at(st.base, st.target, st.plan, st.progress)

    def _report(self) -> None:
        if self._on_progress is None:
            return
        try:
            self._on_progress(self.progress)
        except Exception:
            log.exception("progress callback failed")

    def _save(self, **changes: Any) -> None:
        self._state = dataclasses.replace(self._state, **changes)
        self._store.save(self._state)

    def _failed(self, reason: str) -> RebalanceFailed:
        return RebalanceFailed(reason, status=self._state.status, progress=self.progress)

    # -- running ---------------------------------------------------------------------------------
    async def run(self) -> PartitionMap:
        """Run (or resume) to the target; returns the final map. Raises ``RebalanceFailed``."""
        status = self._state.status
        if status is Status.DONE:
            return self._routing()
        if status is not Status.RUNNING:
            if status is not Status.ABORTED:
                await self.abort(self._state.abort_reason or "resumed abort")
            raise self._failed(self._state.abort_reason or "aborted")
        try:
            await self._announce()
            await self._drive()
            if self._abort_task is None:
                return await self._finish()
            await self._await_abort()  # aborted from outside while running
            raise self._failed(self._state.abort_reason or "aborted")
        except step_runner.StepFailed as e:
            log.error("rebalance step failed, aborting: %s", e)
            self._save(failure=str(e))
            await self._start_abort(f"step failed: {e}")
            raise self._failed(str(e)) from e
        finally:
            await self._publisher.close()

    async def _announce(self) -> None:
        """Install ``map_at(progress)`` everywhere: best effort, but a map conflict (a node holds
        a newer or different map: someone else writes maps) stops the run before any step."""
        pmap = self._routing()
        self._report()
        nodes = list(self._nodes.values())
        results = await asyncio.gather(
            *(self._publisher.install(n, pmap) for n in nodes), return_exceptions=True
        )
        for node, r in zip(nodes, results, strict=True):
            if isinstance(r, errors.KvError | OSError) and not step_runner.retriable(r):
                raise step_runner.StepFailed(f"announce map epoch {pmap.epoch}", str(r)) from r
            if isinstance(r, BaseException):
                log.warning("map epoch %d not on node %s yet: %r", pmap.epoch, node.node_id, r)
                self._publisher.lagging.add(node.node_id)

    async def _drive(self) -> None:
        st = self._state
        try:
            while not planning.is_done(st.plan, st.progress) and self._abort_task is None:
                cap = self._opt.max_concurrent
                ready = planning.next_steps(st.plan, st.progress, max_concurrent=cap)
                fresh = {s.partition for s in ready} - st.started
                if fresh:  # an abort after a crash must know these may have changed
                    self._save(started=st.started | fresh)
                for step in ready:
                    if step.partition not in self._tasks:
                        self._tasks[step.partition] = asyncio.create_task(self._step(step))
                done, _ = await asyncio.wait(
                    self._tasks.values(), return_when=asyncio.FIRST_COMPLETED
                )
                failures = [e for e in self._reap(done) if e is not None]
                if failures:
                    raise failures[0]
                st = self._state
        finally:
            await self._cancel_steps()

    def _reap(self, done: Iterable[asyncio.Task[None]]) -> list[BaseException | None]:
        finished = set(done)
        for p, t in list(self._tasks.items()):
            if t in finished:
                del self._tasks[p]
        return [None if t.cancelled() else t.exception() for t in finished]

    async def _cancel_steps(self) -> None:
        tasks = list(self._tasks.values())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    async def _step(self, step: planning.Step) -> None:
        """Run one step, then record it."""
        loop = asyncio.get_running_loop()
        self._partition_started.setdefault(step.partition, loop.time())
        self._running[step.partition] = step
        self._report()
        started = loop.time()
        try:
            copied = await self._runner.run(step)
        finally:
            self._running.pop(step.partition, None)
        await self._record(step, loop.time() - started, copied)

    async def _record(self, step: planning.Step, took: float, copied: int) -> None:
        """Persist the step as done, THEN tell every node the map that follows from it."""
        st = self._state
        progress = planning.advance(st.progress, step, plan=st.plan)
        partition_s = st.partition_seconds
        move = st.plan.move(step.partition)
        if move is not None and progress.steps_done(step.partition) == len(move.steps):
            started = self._partition_started.pop(step.partition)
            partition_s += asyncio.get_running_loop().time() - started
        self._save(
            progress=progress,
            bytes_moved=st.bytes_moved + copied,
            step_seconds=st.step_seconds + took,
            partition_seconds=partition_s,
        )
        pmap = self._routing()
        summary = planning.progress_summary(st.plan, progress)
        log.info(
            "%s done in %.2fs (epoch %d, step %d/%d)",
            step_runner.describe(step),
            took,
            pmap.epoch,
            summary.steps_done,
            summary.steps_total,
        )
        await self._publisher.broadcast(pmap, self._nodes.values())
        self._report()

    async def _finish(self) -> PartitionMap:
        """The final map must reach every target node; the nodes that left get it if they can."""
        final = self._routing()
        st = self._state
        self._publisher.lagging.clear()  # at the end, everyone is retried in the foreground
        try:
            await self._runner.retrying(
                f"install final map epoch {final.epoch}",
                self._opt.step_timeout_s,
                lambda: self._install_all(final, list(st.target.nodes)),
            )
        except step_runner.StepFailed as e:
            self._save(failure=str(e))
            raise self._failed(str(e)) from e
        leavers = [n for i, n in self._nodes.items() if not st.target.has_node(i)]
        await self._publisher.broadcast(final, leavers)
        self._save(status=Status.DONE, failure=None)
        log.info("rebalance done: epoch %d on all %d nodes", final.epoch, len(st.target.nodes))
        self._report()
        return final

    async def _install_all(self, pmap: PartitionMap, nodes: list[NodeInfo]) -> None:
        missing = await self._publisher.broadcast(pmap, nodes)
        self._publisher.lagging.difference_update(missing)  # retry them in the foreground
        if missing:
            raise errors.Unavailable(f"map epoch {pmap.epoch} not on nodes {missing} yet")

    # -- aborting --------------------------------------------------------------------------------
    async def abort(self, reason: str) -> PartitionMap:
        """Stop the rebalance: roll partitions in motion back (or forward, if a member already
        left), install a map above every earlier epoch, status "aborted". Returns that map;
        raises ``RebalanceFailed`` (status "failed") if the abort itself cannot finish."""
        st = self._state
        if st.status is Status.DONE or (
            st.status is Status.RUNNING and planning.is_done(st.plan, st.progress)
        ):
            raise ValueError("every step is done: the rebalance is finishing, not abortable")
        return await self._start_abort(reason)

    async def _start_abort(self, reason: str) -> PartitionMap:
        task = self._abort_task
        if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):
            self._abort_task = asyncio.create_task(self._abort(reason))
        return await self._await_abort()

    async def _await_abort(self) -> PartitionMap:
        """Wait for the abort; a cancelled waiter stops it (it resumes from the state file)."""
        task = self._abort_task
        assert task is not None
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            task.cancel()
            raise

    async def _abort(self, reason: str) -> PartitionMap:
        st = self._state
        if st.status is Status.ABORTED:
            return self._aborted_map()
        if st.status is Status.RUNNING:
            rolled = frozenset(m.partition for m in st.in_motion() if not st.rolls_forward(m))
            self._save(status=Status.ABORTING, abort_reason=reason, rolled_back=rolled)
        elif st.status is Status.FAILED:
            self._save(status=Status.ABORTING)
        st = self._state
        forward = [m for m in st.in_motion() if m.partition not in st.rolled_back]
        log.warning(
            "aborting rebalance (%s): rolling back partitions %s, forward %s",
            st.abort_reason,
            sorted(st.rolled_back),
            [m.partition for m in forward],
        )
        self._report()
        await self._cancel_steps()
        try:
            # Forward first: until the joiners leave, map_at(progress) stays truthful for the
            # partitions rolled back, so the maps those steps install do too.
            await _together(self._roll_forward(m) for m in forward)
            await _together(self._roll_back(p) for p in sorted(st.rolled_back))
            final = self._aborted_map()
            await self._publisher.broadcast(final, self._nodes.values())
            await self._drop_joiners(final)
        except step_runner.StepFailed as e:
            log.error("abort failed: %s", e)
            self._save(status=Status.FAILED, failure=f"abort failed: {e}")
            self._report()
            raise self._failed(str(e)) from e
        finally:
            await self._publisher.close()
        self._save(status=Status.ABORTED)
        log.warning("rebalance aborted: map epoch %d installed", final.epoch)
        self._report()
        return final

    def _aborted_map(self) -> PartitionMap:
        st = self._state
        return transition.aborted_map(
            st.base, st.target, st.plan, st.progress, rolled_back=st.rolled_back
        )

    async def _roll_forward(self, move: planning.PartitionMove) -> None:
        while (k := self._state.progress.steps_done(move.partition)) < len(move.steps):
            await self._step(move.steps[k])

    async def _roll_back(self, partition: int) -> None:
        """Take the joiners out of the Raft group (leadership back to the base leader first)."""
        heir = self._state.base.replicas[partition][0]
        for node_id in self._state.joiners(partition):
            await self._runner.retrying(
                f"partition {partition} roll back {node_id}",
                self._opt.step_timeout_s,
                functools.partial(self._runner.leave, partition, node_id, heir=heir),
            )
            log.info("partition %d: %s left the group (rolled back)", partition, node_id)

    async def _drop_joiners(self, final: PartitionMap) -> None:
        """Delete the rolled-back joiners' copies; one that cannot be reached is an orphan."""
        orphans = set(self._state.orphans)

        async def drop(p: int, node: NodeInfo) -> None:
            async def attempt() -> None:
                await self._publisher.install(node, final)  # drop is refused while listed
                await self._admin.drop(node, p)

            what = f"partition {p} drop {node.node_id}"
            try:
                await self._runner.retrying(what, self._opt.step_timeout_s, attempt)
                orphans.discard((p, node.node_id))
            except step_runner.StepFailed as e:
                log.warning("partition %d: data left on node %s: %s", p, node.node_id, e)
                orphans.add((p, node.node_id))

        st = self._state
        await _together(
            drop(p, self._nodes[n]) for p in sorted(st.rolled_back) for n in st.joiners(p)
        )
        self._save(orphans=tuple(sorted(orphans)))


def _store(where: str | StateStore) -> StateStore:
    """A path means the file store (``ringkv local``); the operator passes its own store."""
    return state_file.FileStore(where) if isinstance(where, str) else where


async def _together(work: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Run concurrently; the first failure cancels the rest and is raised as itself."""
    try:
        async with asyncio.TaskGroup() as group:
            for w in work:
                group.create_task(w)
    except BaseExceptionGroup as eg:
        raise eg.exceptions[0] from None
