"""``RebalanceRunner``: runs at most one rebalance of one KVCluster, in the background.

The rebalance runs as a task beside the reconcile loop (a plan can take hours); the loop reads
its live progress and reports it. The executor persists its state in the KVCluster's ConfigMap
before every effect, so a cancelled run (operator shutdown, pod deleted) loses nothing: the next
operator finds the unfinished state and resumes it (``resume``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable

from kvnode.core.model import PartitionMap
from kvnode.core.plan import MigrationPlan
from kvnode.rebalance import executor
from kvnode.rebalance.admin import NodeAdmin
from kvnode.rebalance.state import StateStore

log = logging.getLogger(__name__)

FinishCallback = Callable[[bool, str], Awaitable[None]]  # (succeeded, message)


class RebalanceRunner:
    def __init__(
        self,
        *,
        store: StateStore,
        admin: NodeAdmin,
        options: executor.Options,
        on_progress: executor.ProgressCallback,
        on_finish: FinishCallback,
    ) -> None:
        self._store = store
        self._admin = admin
        self._options = options
        self._on_progress = on_progress
        self._on_finish = on_finish
        self._rebalancer: executor.Rebalancer | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def busy(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def live(self) -> executor.RebalanceProgress | None:
        """Progress of the rebalance running here now; None when none runs here."""
        return self._rebalancer.progress if self.busy and self._rebalancer else None

    def start(
        self,
        current: PartitionMap,
        target: PartitionMap,
        *,
        plan: MigrationPlan | None = None,
        max_concurrent: int | None = None,
    ) -> executor.RebalanceProgress:
        """Plan, persist and start ``current`` -> ``target`` (``plan``: this one instead of the
        executor's; ``max_concurrent``: another cap than the operator's). The executor refuses
        to replace an unfinished persisted rebalance (``UnfinishedRebalance``), and this runner
        refuses to start while one runs here: two plans never run side by side."""
        self._refuse_if_busy()
        rb = executor.Rebalancer.create(
            self._store,
            current,
            target,
            admin=self._admin,
            options=self._capped(max_concurrent),
            on_progress=self._on_progress,
            plan=plan,
        )
        self._launch(rb)
        return rb.progress

    def resume(self, *, max_concurrent: int | None = None) -> None:
        """Load the persisted rebalance and run it (a persisted abort is finished instead)."""
        self._refuse_if_busy()
        rb = executor.Rebalancer.load(
            self._store,
            admin=self._admin,
            options=self._capped(max_concurrent),
            on_progress=self._on_progress,
        )
        self._launch(rb)

    def _capped(self, max_concurrent: int | None) -> executor.Options:
        if max_concurrent is None:
            return self._options
        return dataclasses.replace(self._options, max_concurrent=max_concurrent)

    def _refuse_if_busy(self) -> None:
        if self.busy:
            raise RuntimeError("a rebalance is already running for this cluster")

    def _launch(self, rb: executor.Rebalancer) -> None:
        self._rebalancer = rb
        self._task = asyncio.create_task(self._run(rb), name="rebalance")

    async def _run(self, rb: executor.Rebalancer) -> None:
        try:
            final = await rb.run()
        except executor.RebalanceFailed as e:
            await self._on_finish(False, f"rebalance {e.status.value}: {e.reason}")
        except asyncio.CancelledError:
            log.info("rebalance interrupted; it resumes from its persisted state")
            raise
        except Exception as e:  # an unexpected error: the persisted state still says where
            log.exception("rebalance stopped by an unexpected error")
            await self._on_finish(False, f"rebalance stopped: {type(e).__name__}: {e}")
        else:
            p = rb.progress
            await self._on_finish(
                True,
                f"rebalance done: map epoch {final.epoch} on {len(final.nodes)} nodes, "
                f"{p.partitions_done} partitions and {p.bytes_moved} bytes moved in "
                f"{p.elapsed_s:.1f}s",
            )

    async def stop(self) -> None:
        """Cancel the running rebalance (it stays resumable) and wait for it to stop."""
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
