"""What each migration step does against the nodes, with retries; the executor sequences them.

Every step is idempotent and re-checks the cluster instead of trusting the plan's hints (who
leads, whether a change already happened), so a step interrupted by a crash or a cancelled
request is simply run again. Retries live here and only here: a retriable error (and, because
every ``NodeAdmin`` call is idempotent, an ``UnknownOutcome``) is retried with capped exponential
backoff until the step's deadline; anything else fails the step with ``StepFailed``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from kvnode.core import errors
from kvnode.core.model import NodeInfo, PartitionMap
from kvnode.core.plan import Step, StepKind
from kvnode.rebalance import admin as admin_api

log = logging.getLogger(__name__)
DIGEST_ROUND_S = 20.0  # one digest round; a slower one is retried with a fresh marker
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Options:
    """How the executor paces and bounds its work."""

    max_concurrent: int = 2
    """Partitions in motion at once (``next_steps``' cap)."""
    step_timeout_s: float = 120.0
    """Deadline of one step, retries included; a step past it aborts the run."""
    seed_timeout_s: float = 1800.0
    """Deadline of a SEED step: it streams a whole partition."""
    poll_interval_s: float = 0.2
    """Pause between two looks at a condition (catch-up, digests, leadership)."""
    call_timeout_s: float = 10.0
    """Bound of one short admin call (state, digest, map install, drop)."""
    backoff_initial_s: float = 0.1
    backoff_max_s: float = 2.0

    def __post_init__(self) -> None:
        if self.max_concurrent < 1:
            raise ValueError(f"max_concurrent must be >= 1, got {self.max_concurrent}")
        for name in ("step_timeout_s", "seed_timeout_s", "poll_interval_s", "call_timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")


class StepFailed(Exception):
    """An action cannot succeed: a non-retriable error, data divergence, or its deadline."""

    def __init__(self, what: str, reason: str) -> None:
        super().__init__(f"{what}: {reason}")
        self.what = what
        self.reason = reason


_WHAT: dict[StepKind, str] = {
    StepKind.SEED: "copy the data to {n}",
    StepKind.ADD: "make {n} a voter",
    StepKind.CATCH_UP: "let {n} catch up",
    StepKind.VERIFY: "verify the copy on {n}",
    StepKind.TRANSFER_LEADER: "move leadership off {n}",
    StepKind.REMOVE: "remove {n} from the group",
    StepKind.DROP: "delete the data left on {n}",
    StepKind.PREFER_LEADER: "hand leadership to {n}",
}


def describe(step: Step) -> str:
    """The step in words a user reads in progress lines and abort reasons."""
    return f"partition {step.partition}: {_WHAT[step.kind].format(n=step.node_id)}"


def retriable(exc: BaseException) -> bool:
    """Worth retrying as is: every admin call is idempotent, so an unknown outcome is too."""
    if isinstance(exc, errors.KvError):
        return exc.retriable or isinstance(exc, errors.UnknownOutcome)
    return isinstance(exc, OSError)  # TimeoutError and connection errors included


# Installs a map on one node (raises if the node did not take it).
Installer = Callable[[NodeInfo, PartitionMap], Awaitable[None]]


class StepRunner:
    """Runs single steps. ``routing()`` is the map stating the current membership (``map_at``);
    ``install`` pushes a map to one node through the executor's per-node publisher."""

    def __init__(
        self,
        admin: admin_api.NodeAdmin,
        nodes: Mapping[str, NodeInfo],
        *,
        routing: Callable[[], PartitionMap],
        install: Installer,
        options: Options,
    ) -> None:
        self._admin = admin
        self._nodes = nodes
        self._routing = routing
        self._install = install
        self._opt = options

    async def run(self, step: Step) -> int:
        """Run ``step`` to completion; returns the bytes it copied (SEED), else 0."""
        kind = step.kind
        timeout = self._opt.seed_timeout_s if kind is StepKind.SEED else self._opt.step_timeout_s
        if kind is StepKind.PREFER_LEADER:
            try:
                await self.retrying(describe(step), timeout, lambda: self._prefer_leader(step))
            except StepFailed as e:
                log.warning("%s; the nodes' housekeeping will keep trying", e)
            return 0
        action: dict[StepKind, Callable[[Step], Awaitable[int | None]]] = {
            StepKind.SEED: self._seed,
            StepKind.ADD: self._add,
            StepKind.CATCH_UP: self._catch_up,
            StepKind.VERIFY: self._verify,
            StepKind.TRANSFER_LEADER: self._transfer_off,
            StepKind.REMOVE: self._remove,
            StepKind.DROP: self._drop,
        }
        return await self.retrying(describe(step), timeout, lambda: action[kind](step)) or 0

    async def retrying(self, what: str, timeout: float, attempt: Callable[[], Awaitable[_T]]) -> _T:
        """``attempt()`` until it succeeds, retrying retriable errors, within ``timeout``."""
        delay = self._opt.backoff_initial_s
        last: BaseException | None = None
        try:
            async with asyncio.timeout(timeout):
                while True:
                    try:
                        return await attempt()
                    except (errors.KvError, OSError) as e:
                        if not retriable(e):
                            raise StepFailed(what, f"{type(e).__name__}: {e}") from e
                        last = e
                        log.info("%s: retrying after %s", what, e)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self._opt.backoff_max_s)
        except TimeoutError as e:
            why = "no attempt finished" if last is None else f"last problem: {last}"
            raise StepFailed(what, f"did not succeed within {timeout:g}s; {why}") from e

    # -- looking at the cluster ----------------------------------------------------------------
    async def _call(self, coro: Awaitable[_T], node: NodeInfo) -> _T:
        """A short admin call; a node that does not answer in time is ``Unavailable``."""
        try:
            async with asyncio.timeout(self._opt.call_timeout_s):
                return await coro
        except TimeoutError as e:
            raise errors.Unavailable(f"node {node.node_id} did not answer") from e

    async def state(self, node_id: str, partition: int) -> admin_api.ReplicaState:
        node = self._nodes[node_id]
        return await self._call(self._admin.replica_state(node, partition), node)

    async def find_leader(self, partition: int) -> tuple[NodeInfo, admin_api.ReplicaState]:
        """The partition's leader: a replica that says it leads (highest term wins), else the one
        the others name. Unavailable while there is none (the caller retries)."""
        asked = [n for n in self._routing().replicas[partition] if n in self._nodes]
        answers = await asyncio.gather(
            *(self.state(n, partition) for n in asked), return_exceptions=True
        )
        states = {
            n: s
            for n, s in zip(asked, answers, strict=True)
            if isinstance(s, admin_api.ReplicaState) and s.hosted
        }
        for n, s in sorted(states.items(), key=lambda kv: -kv[1].term):
            if s.role == "leader":
                return self._nodes[n], s
        for hint in {s.leader_id for s in states.values() if s.leader_id}:
            if hint not in states and hint in self._nodes:
                s = await self.state(hint, partition)
                if s.hosted and s.role == "leader":
                    return self._nodes[hint], s
        raise errors.Unavailable(f"partition {partition} has no leader among {asked}")

    async def _poll(self, check: Callable[[], Awaitable[bool]]) -> None:
        """Wait until ``check()`` holds; bounded by the step's deadline around it."""
        while not await check():  # noqa: ASYNC110 - the condition lives on a remote node
            await asyncio.sleep(self._opt.poll_interval_s)

    # -- the steps -----------------------------------------------------------------------------
    async def _seed(self, step: Step) -> int:
        leader, _ = await self.find_leader(step.partition)
        node = self._nodes[step.node_id]
        # The joiner needs a map listing itself and the source; one that missed the announce
        # (still starting) would otherwise only get it after some other step broadcasts.
        await self._install(node, self._routing())
        result = await self._admin.join(node, step.partition, source=leader.node_id)
        return 0 if result.already_hosted else result.bytes

    async def _add(self, step: Step) -> None:
        leader, _ = await self.find_leader(step.partition)
        await self._admin.add_member(leader, step.partition, step.node_id)

    async def _catch_up(self, step: Step) -> None:
        _, lead = await self.find_leader(step.partition)

        async def applied() -> bool:
            s = await self.state(step.node_id, step.partition)
            return s.hosted and s.last_applied >= lead.commit_index and s.leader_id is not None

        await self._poll(applied)

    async def _verify(self, step: Step) -> None:
        """The new copy's digest equals a trusted member's at one log index.

        The reference is the leader, or, when the node being verified leads (an election or a
        hand-off made it leader), the first other voter of the routing map: ``map_at`` lists
        trusted members (original ones, verified joiners) first. Comparing a node with itself
        would prove nothing and used to wait forever for a second digest."""
        p = step.partition
        leader, _ = await self.find_leader(p)
        node = self._nodes[step.node_id]
        ref = leader if leader.node_id != node.node_id else self._reference(p, node.node_id)
        index = await self._admin.start_digest(leader, p)
        found: dict[str, str] = {}

        async def computed() -> bool:
            for n in (ref, node):
                if n.node_id not in found:
                    d = await self._call(self._admin.digest(n, p, index), n)
                    if d is not None:
                        found[n.node_id] = d
            return len(found) == 2

        try:
            async with asyncio.timeout(DIGEST_ROUND_S):
                await self._poll(computed)
        except errors.NotFound as e:  # a replica moved past the index undigested: start over
            raise errors.Unavailable(
                f"a replica of partition {p} no longer has the checksum taken at log index "
                f"{index} (it moved on or restarted); taking a new one"
            ) from e
        except TimeoutError as e:  # e.g. leadership moved and a replica stalled: start over
            missing = [n for n in (ref.node_id, node.node_id) if n not in found]
            raise errors.Unavailable(
                f"could not compare the copy of partition {p} on {node.node_id} with the one on "
                f"{ref.node_id}: {' and '.join(missing)} had not computed its checksum at log "
                f"index {index} within {DIGEST_ROUND_S:g}s (behind, restarting or overloaded); "
                "taking a new one"
            ) from e
        if found[ref.node_id] != found[node.node_id]:
            raise StepFailed(
                describe(step),
                f"data divergence: the copy of partition {p} on {node.node_id} differs from the "
                f"one on {ref.node_id} at log index {index} (digest {found[node.node_id]} vs "
                f"{found[ref.node_id]}); the move is stopped so no copy is deleted",
            )

    def _reference(self, partition: int, node_id: str) -> NodeInfo:
        """A voter to check ``node_id`` against when it leads: the routing map's first other."""
        for n in self._routing().replicas[partition]:
            if n != node_id and n in self._nodes:
                return self._nodes[n]
        raise StepFailed(
            f"partition {partition}: verify the copy on {node_id}",
            f"no other member of partition {partition} to compare {node_id}'s copy with",
        )

    async def hand_off(self, partition: int, node_id: str, *, to: str | None = None) -> None:
        """Make ``node_id`` stop leading ``partition``: to ``to``, else to the map's first other
        replica (an up-to-date voter that stays). Returns once someone else leads."""
        while True:
            leader, _ = await self.find_leader(partition)
            if leader.node_id != node_id:
                return
            heir = to or next(
                (n for n in self._routing().replicas[partition] if n != node_id), None
            )
            if heir is None:
                raise errors.Internal(f"partition {partition} has no replica to take over")
            await self._admin.transfer_leader(leader, partition, heir)
            await asyncio.sleep(self._opt.poll_interval_s)

    async def _transfer_off(self, step: Step) -> None:
        await self.hand_off(step.partition, step.node_id)

    async def _remove(self, step: Step) -> None:
        await self.hand_off(step.partition, step.node_id)
        leader, _ = await self.find_leader(step.partition)
        await self._admin.remove_member(leader, step.partition, step.node_id)

    async def _drop(self, step: Step) -> None:
        node = self._nodes[step.node_id]
        await self._install(node, self._routing())
        await self._call(self._admin.drop(node, step.partition), node)

    async def leave(self, partition: int, node_id: str, *, heir: str) -> None:
        """Take ``node_id`` out of the group (an abort's rollback); leadership goes to ``heir``
        first. A node that is not a voter (any more) is a no-op."""
        await self.hand_off(partition, node_id, to=heir)
        leader, _ = await self.find_leader(partition)
        await self._admin.remove_member(leader, partition, node_id)

    async def _prefer_leader(self, step: Step) -> None:
        while True:
            leader, _ = await self.find_leader(step.partition)
            if leader.node_id == step.node_id:
                return
            await self._admin.transfer_leader(leader, step.partition, step.node_id)
            await asyncio.sleep(self._opt.poll_interval_s)
