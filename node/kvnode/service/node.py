"""NodeService: the node's behaviour behind the HTTP API.

Routing rule: writes and strong reads run on the partition leader. A node that is not the leader
forwards (when the caller allows it) to the leader it knows — from its own replica's Raft state,
else from the cluster view — or answers ``NotLeader``/``NotOwner`` with a hint so a smart client
can go direct. Eventual reads are served by any local replica. Requests carrying an epoch older
than this node's map get ``StaleEpoch`` with the current map. A plain client's request whose
partition has no leader right now, or whose forward hit a stale target, waits and is routed again
within its deadline (``kvnode.service.waiting``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from kvnode.core import errors, hashing
from kvnode.core.model import PartitionMap, Record
from kvnode.core.ops import (
    BatchOutcome,
    Consistency,
    KeyPage,
    OpOutcome,
    RequestContext,
    Write,
    WriteResult,
)
from kvnode.raft import commands
from kvnode.raft.processor import ApplyResult
from kvnode.service import drain, liveness, mapstore, waiting
from kvnode.service.forward import Forwarder
from kvnode.service.groups_api import RaftGroups
from kvnode.service.housekeeping import Housekeeper
from kvnode.service.routing import Router
from kvnode.service.view import ClusterView
from kvnode.service.volume import VolumeState
from kvnode.settings import NodeSettings

log = logging.getLogger(__name__)
T = TypeVar("T")


class NodeService:
    """Implements ``kvnode.http.api.ServiceApi`` on top of the node's Raft groups."""

    def __init__(
        self,
        *,
        settings: NodeSettings,
        groups: RaftGroups,
        forwarder: Forwarder,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._groups = groups
        self._fwd = forwarder
        self._clock = clock
        self._map: PartitionMap | None = None
        self._map_lock = asyncio.Lock()
        self._inflight = 0
        self._volume = VolumeState(settings.data_dir)
        self.view = ClusterView(node_id=settings.node_id, groups=groups, forwarder=forwarder)
        self._router = Router(
            node_id=settings.node_id, groups=groups, view=self.view, current_map=self._require_map
        )
        self._housekeeper = Housekeeper(service=self, groups=groups, settings=settings)

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def node_id(self) -> str:
        return self._settings.node_id

    def raft_addr(self, partition: int) -> str:
        """This node's Raft address for ``partition`` (what a map built for it would say)."""
        return f"{self._settings.host}:{self._settings.raft_port_base + partition}"

    @property
    def limits(self) -> Any:
        return self._settings.limits

    @property
    def pmap(self) -> PartitionMap | None:
        return self._map

    def now_ms(self) -> int:
        return int(self._clock() * 1000)

    async def start(self) -> None:
        os.makedirs(self._settings.data_dir, exist_ok=True)
        registered = self._groups.registered()
        stored = mapstore.load(self._map_path)
        await self._volume.open(has_map=stored is not None, has_replicas=bool(registered))
        # Every replica on disk first (joining ones are not in the map yet), then the map's.
        for p, (self_addr, peers) in registered.items():
            await asyncio.to_thread(self._groups.open_replica, p, self_addr=self_addr, peers=peers)
            # Registered on disk yet marked lost: only a join (seed) creates it, and a kill -9
            # came between the join opening it and clearing the mark. It is fresh: ours.
            await self._volume.reseeded(p)
        if stored is not None:
            await self._adopt(stored, persist=False)
        if self._settings.map_file:
            offered = mapstore.load(self._settings.map_file)
            if offered is not None and (stored is None or offered.epoch > stored.epoch):
                await self.install_map(offered)
        self._housekeeper.start()

    async def stop(self) -> None:
        await self._housekeeper.stop()

    @property
    def _map_path(self) -> str:
        return os.path.join(self._settings.data_dir, "map.json")

    # -- map ---------------------------------------------------------------------------------
    async def install_map(self, pmap: PartitionMap) -> dict[str, Any]:
        async with self._map_lock:
            cur = self._map
            if cur is not None and pmap.epoch < cur.epoch:
                raise errors.StaleEpoch(
                    f"map epoch {pmap.epoch} is older than this node's {cur.epoch}",
                    epoch=cur.epoch,
                    map=cur.to_dict(),
                )
            if cur is not None and pmap.epoch == cur.epoch:
                if pmap != cur:
                    raise errors.InvalidArgument(
                        f"a different map with the same epoch {pmap.epoch} is already installed"
                    )
                return {"epoch": cur.epoch, "changed": False}
            await self._adopt(pmap, persist=True)
            return {"epoch": pmap.epoch, "changed": True}

    async def _adopt(self, pmap: PartitionMap, *, persist: bool) -> None:
        await self._volume.adopting(pmap, self.node_id)
        if persist:
            await asyncio.to_thread(mapstore.save, self._map_path, pmap)
        if not pmap.has_node(self.node_id):
            log.warning("map epoch %d does not include node %s", pmap.epoch, self.node_id)
        else:
            me = pmap.node(self.node_id)
            for p in pmap.partitions_of(self.node_id):
                if p in self.needs_reseed and not self._groups.hosts(p):
                    continue
                peers = [n.raft_addr(p) for n in pmap.replicas_of(p)]
                await asyncio.to_thread(
                    self._groups.open_replica, p, self_addr=me.raft_addr(p), peers=peers
                )
        self._map = pmap
        self.view.set_map(pmap)
        log.info("adopted partition map epoch %d", pmap.epoch)

    def _require_map(self) -> PartitionMap:
        if self._map is None:
            raise errors.Unavailable("this node has no partition map yet", retry_after=1)
        return self._map

    def _check_epoch(self, ctx: RequestContext) -> PartitionMap:
        pmap = self._require_map()
        if ctx.epoch is not None and ctx.epoch < pmap.epoch:
            raise errors.StaleEpoch(
                f"request epoch {ctx.epoch} is older than {pmap.epoch}",
                epoch=pmap.epoch,
                map=pmap.to_dict(),
            )
        return pmap

    # -- routing -----------------------------------------------------------------------------
    async def _admitted(self, fn: Callable[[], Awaitable[T]]) -> T:
        if self._inflight >= self._settings.max_inflight:
            raise errors.Overloaded("too many requests in flight on this node", retry_after=1)
        self._inflight += 1
        try:
            return await fn()
        finally:
            self._inflight -= 1

    def _deadline(self, ctx: RequestContext) -> float:
        return time.monotonic() + ctx.timeout_s

    async def _routed(
        self, p: int, ctx: RequestContext, attempt: Callable[[float, int], Awaitable[T]]
    ) -> T:
        """``attempt(deadline, tries)``, routed again while the partition has no reachable
        leader, within the request's deadline (``waiting.within_deadline``)."""
        return await waiting.within_deadline(
            attempt,
            partition=p,
            ctx=ctx,
            deadline=self._deadline(ctx),
            settle=lambda pause: self._router.settle(p, pause),
        )

    # -- reads -------------------------------------------------------------------------------
    async def get(self, key: str, *, consistency: Consistency, ctx: RequestContext) -> Record:
        return await self._admitted(lambda: self._get(key, consistency, ctx))

    async def _get(self, key: str, consistency: Consistency, ctx: RequestContext) -> Record:
        pmap = self._check_epoch(ctx)
        p = hashing.partition_of(key, pmap.partitions)

        async def attempt(deadline: float, tries: int) -> Record:
            until = waiting.attempt_deadline(time.monotonic(), deadline, idempotent=True)
            if await self._read_here(pmap, p, consistency, until):
                return self._live(p, key)
            target = self._router.read_target(p, consistency, ctx, tries)
            return await self._fwd.get(target, key, consistency, ctx, until)

        return await self._routed(p, ctx, attempt)

    async def _read_here(
        self, pmap: PartitionMap, p: int, consistency: Consistency, until: float
    ) -> bool:
        """Whether this replica serves the read; a strong one passes a read barrier first (on
        the leader) or gets a read index confirmed by the leader (a follower; forwarded when
        that does not come within half the attempt's time)."""
        if not self._router.serves_locally(pmap, p, consistency):
            if consistency is Consistency.STRONG and self._router.may_read_as_follower(pmap, p):
                wait = max(0.05, (until - time.monotonic()) / 2)
                return await self._groups.follower_read(p, timeout=wait)
            return False
        if consistency is Consistency.STRONG:
            await self._groups.read_barrier(p, timeout=max(0.05, until - time.monotonic()))
        return True

    def _live(self, p: int, key: str) -> Record:
        rec = self._groups.store(p).get(key)
        if rec is None or rec.expired(self.now_ms()):
            raise errors.NotFound(f"key {key!r} not found", key=key)
        return rec

    # -- writes ------------------------------------------------------------------------------
    async def write(self, op: Write, *, ctx: RequestContext) -> WriteResult:
        outcome = await self.batch([op], atomic=True, ctx=ctx)
        only = outcome.outcomes[0]
        if only.error is not None:
            raise only.error
        assert only.result is not None
        return only.result

    async def batch(
        self, ops: Sequence[Write], *, atomic: bool, ctx: RequestContext
    ) -> BatchOutcome:
        return await self._admitted(lambda: self._batch(ops, atomic, ctx))

    async def _batch(self, ops: Sequence[Write], atomic: bool, ctx: RequestContext) -> BatchOutcome:
        pmap = self._check_epoch(ctx)
        self.limits.check_batch(list(ops))
        groups: dict[int, list[int]] = {}
        for i, op in enumerate(ops):
            groups.setdefault(hashing.partition_of(op.key, pmap.partitions), []).append(i)
        if atomic and len(groups) > 1:
            raise errors.InvalidArgument(
                f"atomic batch spans {len(groups)} partitions; use hash tags ({{tag}}) "
                "to keep keys together",
                field="atomic",
                partitions=sorted(groups),
            )
        outcomes: list[OpOutcome] = [OpOutcome() for _ in ops]
        shares = [(p, [ops[i] for i in idx], idx) for p, idx in groups.items()]
        results = await asyncio.gather(
            *(self._partition_batch(p, share, ctx) for p, share, _ in shares),
            return_exceptions=True,
        )
        for (_, _, idx), res in zip(shares, results, strict=True):
            for j, i in enumerate(idx):
                outcomes[i] = _outcome(res, j)
        unexpected = [r for r in results if isinstance(r, BaseException)]
        if unexpected and not isinstance(unexpected[0], errors.KvError):
            log.error("batch share failed unexpectedly", exc_info=unexpected[0])
        return BatchOutcome(outcomes=tuple(outcomes))

    async def _partition_batch(
        self, p: int, ops: list[Write], ctx: RequestContext
    ) -> list[WriteResult]:
        """One partition's share on its leader. Retried only when it certainly did not apply
        (``waiting``): an unconfirmed proposal or forward stays ``UnknownOutcome``."""

        async def attempt(deadline: float, tries: int) -> list[WriteResult]:
            if self._groups.hosts(p) and self._groups.is_leader(p):
                cmd = commands.WriteCmd(ops=tuple(ops), now_ms=self.now_ms())
                timeout = max(0.05, deadline - time.monotonic())
                return _write_results(await self._groups.propose(p, cmd, timeout=timeout))
            target = self._router.leader_target(p, ctx, tries)
            return await self._fwd.batch(target, ops, ctx, deadline)

        return await self._routed(p, ctx, attempt)

    # -- listing -----------------------------------------------------------------------------
    async def list_keys(
        self,
        *,
        prefix: str,
        cursor: str | None,
        limit: int,
        consistency: Consistency,
        ctx: RequestContext,
    ) -> KeyPage:
        pmap = self._check_epoch(ctx)
        parts = await asyncio.gather(
            *(
                self.scan_partition(
                    p, prefix=prefix, cursor=cursor, limit=limit, consistency=consistency, ctx=ctx
                )
                for p in range(pmap.partitions)
            )
        )
        merged = sorted((item for items, _ in parts for item in items), key=lambda kv: kv[0])
        page = merged[:limit]
        more = len(merged) > limit or any(m for _, m in parts)
        next_cursor = page[-1][0] if more and page else None
        return KeyPage(items=tuple(page), next_cursor=next_cursor)

    async def scan_partition(
        self,
        p: int,
        *,
        prefix: str,
        cursor: str | None,
        limit: int,
        consistency: Consistency,
        ctx: RequestContext,
    ) -> tuple[list[tuple[str, Record]], bool]:
        """Live records of partition ``p`` (key order) and whether more may follow."""
        pmap = self._require_map()
        if not 0 <= p < pmap.partitions:
            raise errors.InvalidArgument(f"partition must be in [0, {pmap.partitions})")

        async def attempt(deadline: float, tries: int) -> tuple[list[tuple[str, Record]], bool]:
            until = waiting.attempt_deadline(time.monotonic(), deadline, idempotent=True)
            if await self._read_here(pmap, p, consistency, until):
                raw = self._groups.store(p).scan(prefix=prefix, start_after=cursor, limit=limit)
                now = self.now_ms()
                return [(k, r) for k, r in raw if not r.expired(now)], len(raw) == limit
            return await self._fwd.scan(
                self._router.read_target(p, consistency, ctx, tries),
                partition=p,
                prefix=prefix,
                cursor=cursor,
                limit=limit,
                consistency=consistency,
                ctx=ctx,
                deadline=until,
            )

        return await self._routed(p, ctx, attempt)

    # -- cluster, status, health -------------------------------------------------------------
    async def cluster_info(self) -> dict[str, Any]:
        pmap = self._require_map()
        view = await self.view.snapshot()
        if self.node_id in view["nodes"]:
            view["nodes"][self.node_id]["drained"] = self.drained
        return {"node_id": self.node_id, "epoch": pmap.epoch, "map": pmap.to_dict(), **view}

    def partition_status(self) -> list[dict[str, Any]]:
        # Each entry carries the node's drain flag: that is how other nodes' housekeeping
        # learns not to hand this node leadership (ClusterView.drained_nodes).
        return [{**s.to_dict(), "drained": self.drained} for s in self._groups.all_status()]

    # -- identity (kvnode.service.identity) ---------------------------------------------------
    @property
    def needs_reseed(self) -> frozenset[int]:
        return self._volume.needs_reseed

    async def reseeded(self, partition: int) -> None:
        """A fresh replica of ``partition`` was seeded and opened here: it is ours again."""
        await self._volume.reseeded(partition)

    # -- maintenance drain (kvnode.service.drain) ----------------------------------------------
    @property
    def drained(self) -> bool:
        return self._volume.drained

    async def set_drained(self, drained: bool, *, timeout: float) -> dict[str, Any]:
        """Drain (or undrain) this node: persist the flag, then, when draining, hand away every
        leadership and wait until none is left here or ``timeout`` passes. The report names
        each hosted partition's leader; ``complete`` says whether this node leads nothing."""
        await self._volume.set_drained(drained)
        log.info("node %s %s", self.node_id, "drained" if drained else "undrained")
        if drained:
            await drain.until_leaderless(self._groups, self._housekeeper.balance_now, timeout)
        return self.drain_report()

    async def hand_off_before_stop(self, timeout: float) -> list[int]:
        """A graceful stop (SIGTERM: the pod is being deleted) first hands every leadership
        away, as a drain does, so clients meet a new leader at once instead of an election
        timeout after the process is gone; the flag is not persisted (the restarted node leads
        again). Returns the partitions still led here when ``timeout`` passed."""
        self._volume.drain_until_restart()
        return await drain.hand_off_before_stop(
            self._groups, self._housekeeper.balance_now, timeout
        )

    def drain_report(self) -> dict[str, Any]:
        """``drain.report`` of this node."""
        return drain.report(self.node_id, self.drained, self._groups, self.view.leader_node)

    def health(self) -> tuple[bool, dict[str, Any]]:
        ticker = self._groups.ticker
        verdict = liveness.judge(
            alive=ticker.alive,
            last_loop_monotonic=ticker.last_loop_monotonic,
            now=time.monotonic(),
            max_lag_s=self._settings.ticker_stall_s,
        )
        return verdict.ok, verdict.to_dict(self.node_id)

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        if self._map is None:
            return False, {"reason": "no partition map", "node_id": self.node_id}
        # Only replicas the map assigns here count: a joining or removed replica has no say.
        hosted = [p for p in self._map.partitions_of(self.node_id) if self._groups.hosts(p)]
        statuses = {s.partition: s for s in self._groups.all_status()}
        leaderless = [p for p in hosted if (s := statuses.get(p)) is None or s.leader_addr is None]
        reseed = sorted(self.needs_reseed)
        ready = not leaderless and not reseed and self.health()[0]
        details: dict[str, Any] = {"reason": f"partitions {reseed} need a reseed"} if reseed else {}
        return ready, {
            **details,
            "needs_reseed": reseed,
            "node_id": self.node_id,
            "epoch": self._map.epoch,
            "partitions": len(hosted),
            "leaderless": leaderless,
        }


def _outcome(res: list[WriteResult] | BaseException, j: int) -> OpOutcome:
    if isinstance(res, errors.KvError):
        return OpOutcome(error=res)
    if isinstance(res, BaseException):
        log.error("batch share failed unexpectedly", exc_info=res)
        return OpOutcome(error=errors.Internal(f"unexpected failure: {type(res).__name__}"))
    return OpOutcome(result=res[j])


def _write_results(applied: ApplyResult | None) -> list[WriteResult]:
    """Turn the processor's result (delivered by the Raft callback) into results or an error."""
    if applied is None:
        raise errors.Internal("the write could not be decoded by the state machine")
    if applied.failure is not None:
        raise applied.failure.to_error()
    return list(applied.results)
