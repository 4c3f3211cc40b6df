"""An in-memory cluster implementing ``NodeAdmin``, strict where the real nodes are.

It models, per partition, the Raft voters, a leader, a commit index and one membership change at a
time (a concurrent second change is ``Unavailable``); per node, the installed maps (older epochs
are refused, so the history proves monotonic installs) and each replica's data (a join copies the
source's data; a digest hashes a replica's data). Faults: ``fail_next`` (transient Unavailable on
a node's next calls), ``kill``/``revive`` (a node stops answering: calls hang), ``corrupt`` (a
replica's data diverges). With ``housekeeping`` on, a leader that receives a map whose preferred
replica (element 0) is another voter hands leadership over at once, as the nodes' housekeeping
does (at its worst timing); ``handoffs`` records each with whether that replica's copy had been
digested (verified) before. ``ops[p]`` logs every effective change, so tests can check that no step
was skipped or repeated.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from kvnode.core import errors
from kvnode.core.model import NodeInfo, PartitionMap
from kvnode.rebalance.admin import ReplicaState, SeedResult


@dataclass
class Group:
    voters: list[str]
    leader: str
    commit: int = 1
    changing: bool = False


@dataclass
class FakeNode:
    info: NodeInfo
    maps: list[PartitionMap] = field(default_factory=list)
    data: dict[int, dict[str, str]] = field(default_factory=dict)  # hosted replicas
    applied: dict[int, int] = field(default_factory=dict)
    digests_asked: set[tuple[int, int]] = field(default_factory=set)


class FakeCluster:
    """``NodeAdmin`` over simulated nodes; start it from the map the nodes run."""

    def __init__(
        self, pmap: PartitionMap, *, extra: Sequence[NodeInfo] = (), keys: int = 3
    ) -> None:
        self.nodes = {n.node_id: FakeNode(n) for n in [*pmap.nodes, *extra]}
        self.groups: dict[int, Group] = {}
        self.ops: dict[int, list[tuple[str, str]]] = {}
        for p, members in enumerate(pmap.replicas):
            self.groups[p] = Group(list(members), members[0])
            rows = {f"k{p}-{i}": f"v{i}" for i in range(keys)}
            for n in members:
                self.nodes[n].data[p] = dict(rows)
                self.nodes[n].applied[p] = 1
        for node in self.nodes.values():
            if pmap.has_node(node.info.node_id):
                node.maps.append(pmap)
        self.failures: dict[str, int] = {}
        self.dead: set[str] = set()
        self._alive = {n: asyncio.Event() for n in self.nodes}
        for e in self._alive.values():
            e.set()
        self.calls = 0
        self.seeded_bytes = 0
        self.refused_maps = 0  # installs refused as older or conflicting: must stay 0
        self.change_delay_s = 0.001
        self.answer_delay_s = 0.0  # after a membership change applied, before the answer
        self.on_op: Callable[[int, str, str], None] | None = None  # (partition, op, node)
        self._holds: dict[tuple[str, int], asyncio.Event] = {}
        self.housekeeping = False
        self.handoffs: list[tuple[int, str, bool]] = []  # (partition, to, digested before)
        self.digested: set[tuple[int, str]] = set()
        self.drained: set[str] = set()  # maintenance drain: leads nothing while drained

    # -- faults ----------------------------------------------------------------------------------
    def fail_next(self, node_id: str, count: int) -> None:
        self.failures[node_id] = self.failures.get(node_id, 0) + count

    def kill(self, node_id: str) -> None:
        self.dead.add(node_id)
        self._alive[node_id].clear()

    def revive(self, node_id: str) -> None:
        self.dead.discard(node_id)
        self._alive[node_id].set()

    def hold(self, op: str, partition: int) -> asyncio.Event:
        """Make ``op`` ("add"/"remove") on ``partition`` wait until the returned event is set."""
        return self._holds.setdefault((op, partition), asyncio.Event())

    def corrupt(self, node_id: str, partition: int) -> None:
        self.nodes[node_id].data[partition]["corrupt"] = "yes"

    async def _enter(self, node: NodeInfo) -> FakeNode:
        """Every call passes here: count it, apply faults."""
        self.calls += 1
        await asyncio.sleep(0)
        await self._alive[node.node_id].wait()  # a dead node hangs: it stopped answering
        if self.failures.get(node.node_id, 0) > 0:
            self.failures[node.node_id] -= 1
            raise errors.Unavailable(f"injected fault on {node.node_id}")
        return self.nodes[node.node_id]

    def _log(self, p: int, what: str, node_id: str) -> None:
        self.ops.setdefault(p, []).append((what, node_id))
        if self.on_op is not None:
            self.on_op(p, what, node_id)

    def _leader_of(self, me: FakeNode, p: int) -> Group:
        g = self.groups[p]
        if g.leader != me.info.node_id:
            raise errors.NotLeader(f"{me.info.node_id} does not lead {p}", leader=g.leader)
        return g

    # -- NodeAdmin -------------------------------------------------------------------------------
    async def install_map(self, node: NodeInfo, pmap: PartitionMap) -> None:
        me = await self._enter(node)
        cur = me.maps[-1] if me.maps else None
        if cur is not None and pmap.epoch < cur.epoch:
            self.refused_maps += 1
            raise errors.StaleEpoch(f"epoch {pmap.epoch} < {cur.epoch}", epoch=cur.epoch)
        if cur is not None and pmap.epoch == cur.epoch:
            if pmap != cur:
                self.refused_maps += 1
                raise errors.InvalidArgument(f"another map with epoch {pmap.epoch}")
            return
        pmap.validate()
        me.maps.append(pmap)
        if self.housekeeping:
            self._balance(me.info.node_id, pmap)

    def _balance(self, node_id: str, pmap: PartitionMap) -> None:
        """The node's preferred-leader housekeeping, run the moment a map arrives."""
        for p, g in self.groups.items():
            preferred = pmap.replicas[p][0]
            hosts = p in self.nodes[preferred].data  # a wiped voter cannot take over
            hosts = hosts and preferred not in self.drained  # housekeeping respects a drain
            if g.leader == node_id and preferred != node_id and preferred in g.voters and hosts:
                g.leader = preferred
                g.commit += 1
                self.handoffs.append((p, preferred, (p, preferred) in self.digested))
                self._log(p, "lead", preferred)

    async def set_drained(self, node: NodeInfo, drained: bool) -> dict[str, object]:
        """The node-level drain: its leaderships go to another live voter at once."""
        await self._enter(node)
        n = node.node_id
        if not drained:
            self.drained.discard(n)
            return {"node_id": n, "drained": False, "complete": True, "leader_of": []}
        self.drained.add(n)
        for p, g in self.groups.items():
            heir = next((v for v in g.voters if v != n and v not in self.dead), None)
            if g.leader == n and heir is not None:
                g.leader = heir
                g.commit += 1
                self._log(p, "lead", heir)
        led = [p for p, g in self.groups.items() if g.leader == n]
        return {"node_id": n, "drained": True, "complete": not led, "leader_of": led}

    async def replica_state(self, node: NodeInfo, partition: int) -> ReplicaState:
        me = await self._enter(node)
        if partition not in me.data:
            return ReplicaState(partition, hosted=False)
        g = self.groups[partition]
        n = node.node_id
        voter = n in g.voters
        if voter:
            me.applied[partition] = g.commit  # replication is instant for voters
        role = "leader" if g.leader == n else "follower" if voter else "none"
        return ReplicaState(
            partition,
            hosted=True,
            role=role,
            leader_id=g.leader if voter else None,
            term=1,
            commit_index=g.commit if voter else 0,
            last_applied=me.applied[partition],
            members=tuple(g.voters),
            keys=len(me.data[partition]),
        )

    async def join(self, node: NodeInfo, partition: int, *, source: str) -> SeedResult:
        me = await self._enter(node)
        if partition in me.data:
            return SeedResult(partition, already_hosted=True)
        if not me.maps:  # as the real node: a joiner needs a map listing itself and the source
            raise errors.Unavailable("this node has no partition map yet", retry_after=1)
        src = self.nodes[source]
        if source not in self.groups[partition].voters or partition not in src.data:
            raise errors.InvalidArgument(f"{source} holds no replica of {partition}")
        me.data[partition] = dict(src.data[partition])
        me.applied[partition] = src.applied[partition]
        self._log(partition, "seed", node.node_id)
        size = len(json.dumps(me.data[partition]))
        self.seeded_bytes += size
        return SeedResult(partition, already_hosted=False, bytes=size, items=len(me.data))

    async def _change(self, g: Group, partition: int) -> None:
        if g.changing:
            raise errors.Unavailable(f"a membership change of {partition} is in flight")
        g.changing = True
        try:
            await asyncio.sleep(self.change_delay_s)
        finally:
            g.changing = False

    async def add_member(self, leader: NodeInfo, partition: int, member: str) -> None:
        g = self._leader_of(await self._enter(leader), partition)
        if member in g.voters:
            return
        if partition not in self.nodes[member].data:
            raise errors.PreconditionFailed(f"{member} has not joined {partition}")
        if ("add", partition) in self._holds:
            await self._holds["add", partition].wait()
        await self._change(g, partition)
        g.voters.append(member)
        g.commit += 1
        self._log(partition, "add", member)
        await asyncio.sleep(self.answer_delay_s)

    async def remove_member(self, leader: NodeInfo, partition: int, member: str) -> None:
        g = self._leader_of(await self._enter(leader), partition)
        if member == g.leader:
            raise errors.InvalidArgument("the leader cannot remove itself")
        if member not in g.voters:
            return
        if ("remove", partition) in self._holds:
            await self._holds["remove", partition].wait()
        await self._change(g, partition)
        g.voters.remove(member)
        g.commit += 1
        self._log(partition, "remove", member)
        await asyncio.sleep(self.answer_delay_s)

    async def transfer_leader(self, leader: NodeInfo, partition: int, to: str) -> None:
        g = self._leader_of(await self._enter(leader), partition)
        if to not in g.voters:
            raise errors.InvalidArgument(f"{to} is not a voter of {partition}")
        if to in self.dead:
            raise errors.Unavailable(f"{to} does not answer")
        if g.leader != to:
            g.leader = to
            g.commit += 1
            self._log(partition, "lead", to)

    async def start_digest(self, leader: NodeInfo, partition: int) -> int:
        g = self._leader_of(await self._enter(leader), partition)
        g.commit += 1
        return g.commit

    async def digest(self, node: NodeInfo, partition: int, index: int) -> str | None:
        me = await self._enter(node)
        if partition not in me.data:
            raise errors.NotFound(f"{node.node_id} holds no replica of {partition}")
        if (partition, index) not in me.digests_asked:  # computed in the background
            me.digests_asked.add((partition, index))
            return None
        self.digested.add((partition, node.node_id))
        rows = json.dumps(sorted(me.data[partition].items())).encode()
        return hashlib.sha256(rows).hexdigest()

    async def drop(self, node: NodeInfo, partition: int) -> bool:
        me = await self._enter(node)
        installed = me.maps[-1] if me.maps else None
        if installed is not None and node.node_id in installed.replicas[partition]:
            raise errors.PreconditionFailed(f"{node.node_id}'s map still lists it in {partition}")
        if node.node_id in self.groups[partition].voters:
            raise errors.PreconditionFailed(f"{node.node_id} still votes in {partition}")
        if partition not in me.data:
            return False
        del me.data[partition]
        self._log(partition, "drop", node.node_id)
        return True

    # -- views for assertions --------------------------------------------------------------------
    def members(self) -> list[set[str]]:
        return [set(self.groups[p].voters) for p in sorted(self.groups)]

    def holders(self, partition: int) -> set[str]:
        return {n for n, node in self.nodes.items() if partition in node.data}

    def installed(self, node_id: str) -> PartitionMap:
        return self.nodes[node_id].maps[-1]
