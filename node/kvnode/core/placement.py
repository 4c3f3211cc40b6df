"""Deterministic, balanced, zone-aware replica placement that moves as few replicas as possible.

``place`` is a pure function: node order does not matter (nodes are sorted by id, ties broken by
a rendezvous hash of ``(partition, node)``), no clock, no randomness. It keeps every previous
membership on a live node, splits each partition's replicas over zones (``zone_totals``), fills
missing slots on the least-loaded node, then evens loads out along cost-reducing paths — free
re-routing of memberships created in this call first, one-replica moves only when unavoidable —
and finally picks balanced, stable leaders. node/DESIGN.md ("Placement") has the argument and the
bounds; the tests check them: R distinct nodes per partition, replicas per node in
{floor, ceil}(P*R/N) (per zone when zones are uneven), leaders in {floor, ceil}(P/N),
min(R, #zones) zones per partition, N -> N+1 moves <= ceil(P*R/(N+1)), removal moves exactly
the removed node's replicas.
"""

from __future__ import annotations

import functools
from collections import Counter, deque
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from kvnode.core import hashing

Zone = str | None
_T = TypeVar("_T", bound=Hashable)
# One hop of a rebalancing path: (from, to, partition) — a unit moves from ``from`` to ``to``.
_Hop = tuple[_T, _T, int]


@dataclass(frozen=True, slots=True)
class NodeSlot:
    """A node that can hold replicas; ``zone`` is its failure domain (None: unknown)."""

    node_id: str
    zone: str | None = None


_Rank = Callable[[int, str], int]


def _ranker() -> _Rank:
    """Rendezvous-hash tie breaker, memoised for one ``place`` call (same key, same rank)."""

    @functools.cache
    def rank(partition: int, name: str) -> int:
        return hashing.stable_hash(f"{partition}\x00{name}".encode())

    return rank


def _zone_key(zone: Zone) -> tuple[bool, str]:
    return (zone is not None, zone or "")


def place(
    nodes: Sequence[NodeSlot],
    *,
    partitions: int,
    replication: int,
    previous: Sequence[Sequence[str]] | None = None,
) -> tuple[tuple[str, ...], ...]:
    """Replica node ids per partition (element 0 = preferred leader); see the module docstring.

    ``previous`` is the current map; memberships on nodes that still exist are kept unless balance
    requires moving them. Raises ValueError on bad arguments or fewer nodes than ``replication``.
    """
    slots = _validate(nodes, partitions, replication, previous)
    zone_of = {s.node_id: s.zone for s in slots}
    kept = _kept(previous, zone_of, partitions)
    rank = _ranker()
    groups: dict[Zone, list[str]] = {}
    for s in slots:
        groups.setdefault(s.zone, []).append(s.node_id)
    hints = [
        k[0] if k and previous and k[0] == previous[p][0] else None for p, k in enumerate(kept)
    ]
    members: list[list[str]] = [[] for _ in range(partitions)]
    if len(groups) == 1:
        demands = {next(iter(groups)): [replication] * partitions}
    else:
        counts = _zone_counts(groups, kept, zone_of, replication=replication, rank=rank)
        demands = {z: [c[z] for c in counts] for z in groups}
    for zone in sorted(groups, key=_zone_key):
        kept_z = [[n for n in k if zone_of[n] == zone] for k in kept]
        part = _balance_group(groups[zone], demands[zone], kept_z, hints=hints, rank=rank)
        for p, chosen in enumerate(part):
            members[p].extend(chosen)
    leaders = _assign_leaders(members, [s.node_id for s in slots], hints, rank=rank)
    return tuple(
        _ordered(members[p], leaders[p], kept[p], partition=p, rank=rank) for p in range(partitions)
    )


def _validate(
    nodes: Sequence[NodeSlot],
    partitions: int,
    replication: int,
    previous: Sequence[Sequence[str]] | None,
) -> list[NodeSlot]:
    if partitions <= 0:
        raise ValueError(f"partitions must be positive, got {partitions}")
    if replication <= 0:
        raise ValueError(f"replication must be positive, got {replication}")
    ids = [n.node_id for n in nodes]
    if any(not i for i in ids):
        raise ValueError("node ids must be non-empty")
    if len(set(ids)) != len(ids):
        dupes = sorted(i for i, c in Counter(ids).items() if c > 1)
        raise ValueError(f"duplicate node ids: {dupes}")
    if len(ids) < replication:
        raise ValueError(
            f"replication {replication} needs at least {replication} nodes, got {len(ids)}"
        )
    if previous is not None and len(previous) != partitions:
        raise ValueError(f"previous map has {len(previous)} partitions, expected {partitions}")
    return sorted(nodes, key=lambda n: n.node_id)


def _kept(
    previous: Sequence[Sequence[str]] | None,
    zone_of: dict[str, Zone],
    partitions: int,
) -> list[list[str]]:
    """Previous members still alive, deduplicated, in previous order (surplus members of a
    shrinking replication factor are dropped later, from the busiest nodes)."""
    rows = previous if previous is not None else [()] * partitions
    return [[n for n in dict.fromkeys(m) if n in zone_of] for m in rows]


def _cheapest_path(
    sources: Sequence[_T],
    edges: Callable[[_T], Iterable[tuple[_T, int, int]]],
    is_target: Callable[[_T], bool],
) -> list[_Hop[_T]] | None:
    """0-1 BFS from ``sources`` to the nearest target; ``edges(u)`` yields (v, partition, cost).

    Vertices on the returned path are distinct, so applying its hops one after another is valid
    against the state the edges were computed from.
    """
    dist: dict[_T, int] = dict.fromkeys(sources, 0)
    parent: dict[_T, tuple[_T, int]] = {}
    queue: deque[tuple[int, _T]] = deque((0, s) for s in sources)
    settled: set[_T] = set()
    while queue:
        d, u = queue.popleft()
        if u in settled:
            continue
        settled.add(u)
        if u in parent and is_target(u):
            path: list[_Hop[_T]] = []
            while u in parent:
                prev, p = parent[u]
                path.append((prev, u, p))
                u = prev
            return path[::-1]
        for v, p, cost in edges(u):
            if v not in settled and d + cost < dist.get(v, d + cost + 1):
                dist[v] = d + cost
                parent[v] = (u, p)
                if cost == 0:
                    queue.appendleft((d, v))
                else:
                    queue.append((d + cost, v))
    return None


def zone_totals(nodes: Sequence[NodeSlot], *, partitions: int, replication: int) -> dict[Zone, int]:
    """Replicas each zone holds in total: as proportional to its node count as the spread rule
    allows (every partition spans min(R, #zones) zones, so a zone holds between P*lo and P*hi).

    Per-node loads inside zone z are floor/ceil of ``totals[z] / nodes_in(z)`` — the documented
    balance bound when zones are uneven.
    """
    if partitions <= 0 or not 0 < replication <= len(nodes):
        raise ValueError(f"need partitions > 0 and 0 < replication <= {len(nodes)} nodes")
    sizes = Counter(n.zone for n in nodes)
    bounds = _zone_bounds(sizes, replication)
    totals = {z: partitions * bounds[z][0] for z in sizes}
    order = sorted(sizes, key=_zone_key)
    for _ in range(partitions * replication - sum(totals.values())):
        open_zones = [z for z in order if totals[z] < partitions * bounds[z][1]]
        best = open_zones[0]
        for z in open_zones[1:]:
            if (totals[z] + 1) * sizes[best] < (totals[best] + 1) * sizes[z]:
                best = z
        totals[best] += 1
    return totals


def _zone_bounds(sizes: Counter[Zone], replication: int) -> dict[Zone, tuple[int, int]]:
    """Per-partition (min, max) replicas in each zone that make a partition span min(R, Z)."""
    if replication <= len(sizes):
        return {z: (0, 1) for z in sizes}
    return {z: (1, min(n, replication)) for z, n in sizes.items()}


def _zone_counts(
    groups: dict[Zone, list[str]],
    kept: list[list[str]],
    zone_of: dict[str, Zone],
    *,
    replication: int,
    rank: _Rank,
) -> list[dict[Zone, int]]:
    """Replicas per (partition, zone): spread rule per partition, ``zone_totals`` per zone."""
    zs = _Zones(groups, kept, zone_of, replication=replication)
    for p, row in enumerate(zs.counts):
        for z in zs.zones:  # the spread rule first: these units are forced
            zs.add(p, z, max(0, zs.bounds[z][0] - row[z]))
        while sum(row.values()) > replication:  # replication shrank: trim the fullest zones
            spare = [y for y in zs.zones if row[y] > zs.bounds[y][0]]
            zs.add(p, max(spare, key=lambda y: zs.total[y] - zs.target[y]), -1)
        while sum(row.values()) < replication:  # missing units go where totals lag most
            room = [z for z in zs.zones if row[z] < zs.bounds[z][1]]
            zs.add(p, max(room, key=lambda z: (zs.target[z] - zs.total[z], rank(p, f"z:{z}"))), 1)
    while any(zs.total[z] > zs.target[z] for z in zs.zones):
        over = [z for z in zs.zones if zs.total[z] > zs.target[z]]
        path = _cheapest_path(over, zs.edges, zs.under)
        if path is None:  # pragma: no cover - impossible: target totals are always feasible
            raise AssertionError("zone totals are infeasible")
        zs.shift(path)
    return zs.counts


class _Zones:
    """Working state of per-(partition, zone) replica counts inside one ``place`` call.

    Units are moved along cheapest paths between zones (``_cheapest_path``): a hop u -> v in row p
    takes a unit of zone u from partition p and gives one to zone v. It is free when p's unit in u
    was added in this call, else it costs one move (a kept replica leaves).
    """

    def __init__(
        self,
        groups: dict[Zone, list[str]],
        kept: list[list[str]],
        zone_of: dict[str, Zone],
        *,
        replication: int,
    ) -> None:
        self.zones = sorted(groups, key=_zone_key)
        self.bounds = _zone_bounds(Counter({z: len(i) for z, i in groups.items()}), replication)
        slots = [NodeSlot(n, z) for z, ids in groups.items() for n in ids]
        self.target = zone_totals(slots, partitions=len(kept), replication=replication)
        self.counts: list[dict[Zone, int]] = []
        for members in kept:
            c = Counter(zone_of[n] for n in members)
            self.counts.append({z: min(c[z], self.bounds[z][1]) for z in self.zones})
        self.base = [dict(c) for c in self.counts]
        self.total = {z: sum(c[z] for c in self.counts) for z in self.zones}
        # Which kept member leaves when a zone gives up a kept unit: the busiest, as in
        # _balance_group, so zone changes do not unbalance the nodes inside a zone.
        self.held = Counter(n for k in kept for n in k)
        self.staying = [{z: [n for n in k if zone_of[n] == z] for z in self.zones} for k in kept]

    def under(self, z: Zone) -> bool:
        return self.total[z] < self.target[z]

    def add(self, p: int, z: Zone, units: int) -> None:
        self.counts[p][z] += units
        self.total[z] += units

    def shift(self, path: list[_Hop[Zone]]) -> None:
        for u, v, p in path:
            members = self.staying[p][u]
            if self.counts[p][u] <= self.base[p][u] and members:
                leaving = max((self.held[n], n) for n in members)[1]
                members.remove(leaving)
                self.held[leaving] -= 1
            self.add(p, u, -1)
            self.add(p, v, 1)

    def edges(self, u: Zone) -> Iterable[tuple[Zone, int, int]]:
        """Per zone v, the cheapest row to move a unit u -> v: free first; then one not yet given
        a unit of v, whose leaving member is busiest; then the most lopsided row."""
        best: dict[Zone, tuple[int, int, int, int, int]] = {}
        for p, c in enumerate(self.counts):
            if c[u] <= self.bounds[u][0]:
                continue
            cost = 0 if c[u] > self.base[p][u] else 1
            leaving = max((self.held[n] for n in self.staying[p][u]), default=0) * cost
            for v in self.zones:
                if v != u and c[v] < self.bounds[v][1]:
                    key = (cost, c[v] - self.base[p][v], -leaving, c[v] - c[u], p)
                    if v not in best or key < best[v]:
                        best[v] = key
        return [(v, key[-1], key[0]) for v, key in best.items()]


class _Group:
    """Mutable working state of one zone's assignment inside a single ``place`` call."""

    def __init__(self, ids: list[str], kept: list[list[str]], hints: list[str | None]) -> None:
        self.ids = ids
        self.hints = hints
        self.prev = {(p, n) for p, members in enumerate(kept) for n in members}
        self.members: list[list[str]] = [list(m) for m in kept]
        self.held: dict[str, set[int]] = {n: set() for n in ids}
        for p, members in enumerate(kept):
            for n in members:
                self.held[n].add(p)

    def load(self, node: str) -> int:
        return len(self.held[node])

    def move(self, partition: int, src: str | None, dst: str | None) -> None:
        if src is not None:
            self.members[partition].remove(src)
            self.held[src].discard(partition)
        if dst is not None:
            self.members[partition].append(dst)
            self.held[dst].add(partition)

    def free_edges(self, u: str) -> Iterable[tuple[str, int, int]]:
        """Re-route a membership created in this call (not in the previous map): costs no move."""
        for p in sorted(self.held[u]):
            if (p, u) not in self.prev:
                for v in self.ids:
                    if v not in self.members[p]:
                        yield v, p, 0


def _balance_group(
    ids: list[str],
    demand: list[int],
    kept: list[list[str]],
    *,
    hints: list[str | None],
    rank: _Rank,
) -> list[list[str]]:
    """Choose ``demand[p]`` distinct nodes of ``ids`` per partition, loads within one of each other.

    Kept members stay unless balance forces them out. Termination: each step moves one replica
    from a node to one holding at least two fewer, so the sum of squared loads strictly drops.
    Completeness: if load(a) >= load(b) + 2 some partition holds a but not b, so a direct move
    always exists; only such unavoidable direct moves cost extra movement.
    """
    g = _Group(ids, kept, hints)
    for p, want in enumerate(demand):
        while len(g.members[p]) > want:  # the zone holds fewer of p now: drop the busiest
            g.move(p, max(g.members[p], key=lambda n: (g.load(n), n)), None)
        while len(g.members[p]) < want:
            free = [n for n in ids if n not in g.members[p]]
            g.move(p, None, min((g.load(n), rank(p, n), n) for n in free)[2])
    while True:
        by_load = sorted(ids, key=lambda n: (-g.load(n), n))
        low = g.load(by_load[-1])
        if g.load(by_load[0]) - low <= 1:
            return g.members
        if not _free_rebalance(g, by_load, low):
            _direct_move(g, by_load[0], by_load[-1], rank)


def _at_most(measure: Callable[[str], int], limit: int) -> Callable[[str], bool]:
    return lambda node: measure(node) <= limit


def _free_rebalance(g: _Group, by_load: list[str], low: int) -> bool:
    for src in by_load:
        limit = g.load(src) - 2
        if limit < low:
            return False
        path = _cheapest_path([src], g.free_edges, _at_most(g.load, limit))
        if path is not None:
            for u, v, p in path:
                g.move(p, u, v)
            return True
    return False


def _direct_move(g: _Group, src: str, dst: str, rank: _Rank) -> None:
    """Move one replica src -> dst, preferring partitions src does not lead and dst ranks high."""
    options = [p for p in g.held[src] if dst not in g.members[p]]
    p = min(options, key=lambda p: (g.hints[p] == src, (p, src) not in g.prev, rank(p, dst)))
    g.move(p, src, dst)


def _assign_leaders(
    members: list[list[str]], ids: list[str], hints: list[str | None], *, rank: _Rank
) -> list[str]:
    """One leader per partition among its members; keep previous leaders, then even out counts.

    Balancing uses cost-reducing paths (Harvey et al., semi-matchings): when no path from a node
    with k leaders to a node with <= k-2 exists, the maximum count is as low as the memberships
    allow. Re-pointing a leader that already changed in this call is free, keeping one costs 1.
    """
    leader: list[str] = []
    led: dict[str, set[int]] = {n: set() for n in ids}
    for p, ms in enumerate(members):
        hint = hints[p]
        chosen = hint if hint in ms else min((len(led[n]), rank(p, n), n) for n in ms)[2]
        assert chosen is not None
        leader.append(chosen)
        led[chosen].add(p)

    def edges(u: str) -> Iterable[tuple[str, int, int]]:
        for p in sorted(led[u]):
            for v in members[p]:
                if v != u:
                    yield v, p, 1 if hints[p] == u else 0

    while True:
        low = min(len(s) for s in led.values())
        for src in sorted(ids, key=lambda n: (-len(led[n]), n)):
            limit = len(led[src]) - 2
            if limit < low:
                return leader
            path = _cheapest_path([src], edges, _at_most(lambda n: len(led[n]), limit))
            if path is not None:
                for u, v, p in path:
                    leader[p] = v
                    led[u].discard(p)
                    led[v].add(p)
                break
        else:
            return leader


def _ordered(
    members: list[str], leader: str, kept: list[str], *, partition: int, rank: _Rank
) -> tuple[str, ...]:
    """Leader first, then kept members in their previous order, then new members by rank."""
    pos = {n: i for i, n in enumerate(kept)}
    rest = sorted((pos.get(n, len(pos)), rank(partition, n), n) for n in members if n != leader)
    return (leader, *(n for _, _, n in rest))


def load(replicas: Sequence[Sequence[str]]) -> dict[str, int]:
    """Replicas held per node id (nodes holding none are absent)."""
    return dict(Counter(n for members in replicas for n in members))


def leader_load(replicas: Sequence[Sequence[str]]) -> dict[str, int]:
    """Preferred-leader partitions per node id (element 0 of each replica tuple)."""
    return dict(Counter(members[0] for members in replicas if members))


def moved_replicas(previous: Sequence[Sequence[str]], target: Sequence[Sequence[str]]) -> int:
    """(partition, node) memberships present in ``target`` but not in ``previous``.

    Each is one replica copied to a new place; order changes within a tuple are not moves.
    """
    if len(previous) != len(target):
        raise ValueError(f"maps differ in size: {len(previous)} vs {len(target)} partitions")
    return sum(len(set(t) - set(p)) for p, t in zip(previous, target, strict=True))


def leader_changes(previous: Sequence[Sequence[str]], target: Sequence[Sequence[str]]) -> int:
    """Partitions whose preferred leader (element 0) differs between the two maps."""
    if len(previous) != len(target):
        raise ValueError(f"maps differ in size: {len(previous)} vs {len(target)} partitions")
    return sum(1 for p, t in zip(previous, target, strict=True) if p[:1] != t[:1])


def lower_bound_moves(
    previous: Sequence[Sequence[str]], nodes: Sequence[NodeSlot], *, replication: int
) -> int:
    """Fewest moves any map over ``nodes`` meeting ``place``'s balance targets needs.

    Each term is forced: partitions regain the replicas they lost (removed nodes); each zone
    reaches ``zone_totals``; each node reaches floor(zone total / zone size) — without zones,
    floor(P*R/N). For N -> N+1 from a balanced map this is floor(P*R/(N+1)), at most one under the
    issue's ceil(P*R/(N+1)).
    """
    zone_of = {n.node_id: n.zone for n in nodes}
    if not zone_of:
        raise ValueError("nodes must not be empty")
    kept = _kept(previous, zone_of, len(previous))
    totals = zone_totals(nodes, partitions=len(previous), replication=replication)
    sizes = Counter(zone_of.values())
    bounds = _zone_bounds(sizes, replication)
    in_zone = Counter[Zone]()
    for members in kept:
        for z, c in Counter(zone_of[n] for n in members).items():
            in_zone[z] += min(c, bounds[z][1]) if len(sizes) > 1 else c
    held = load(kept)
    return max(
        sum(max(0, replication - len(k)) for k in kept),
        sum(max(0, t - in_zone[z]) for z, t in totals.items()),
        sum(max(0, totals[z] // sizes[z] - held.get(n, 0)) for n, z in zone_of.items()),
    )
