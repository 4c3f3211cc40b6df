"""Quiesced Raft groups and one beacon per node pair: the pure decisions.

An idle Raft group still costs a heartbeat round per period and an election timer per follower,
so an idle node's CPU grew with its partitions (node/DESIGN.md, "Idle partitions"). As TiKV
hibernates regions and CockroachDB quiesces ranges, a leader whose log is fully replicated and
applied everywhere and that has seen no new entry for ``idle_s`` stops heartbeating that group,
and its followers stop their election timers. What replaces the heartbeats is one *beacon* per
node pair and heartbeat period, sent over any Raft connection the two nodes share, listing the
groups the sender leads in quiescence (partition, term, last index). A follower keeps a group
quiesced only while beacons from its leader's node keep listing it at the state it holds, and
the last beacon from that node counts as its leader contact (for pre-vote stickiness, and for
its election deadline when it wakes).

So a leader's failure is still noticed within an election timeout: its node's beacons stop (the
process died, paused or is cut off); after the minimum election timeout without one the
follower wakes with its election deadline at the last beacon plus its randomised timeout, and
runs the usual pre-vote and election. Any new entry, any Raft message other than the beacon, a
ReadIndex probe or the feature handshake, a leadership transfer, or a member's node falling
silent wakes a group back into normal Raft. Quiescing changes no term, vote or log: Raft's
safety argument is untouched, only when heartbeats are sent is.

Nodes are told apart by their Raft port base: partition p's replica on a node listens on
``host:(raft_port_base + p)`` (``kvnode.core.model.NodeInfo.raft_addr``), so ``node_key``
recovers ``host:raft_port_base`` from any replica address and its partition.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

BEACON = "rkv_beacon"
FEATURE = "quiesce"


def node_key(addr: str, partition: int) -> str:
    """``host:raft_port_base`` of the node whose replica of ``partition`` listens on ``addr``."""
    host, port = addr.rsplit(":", 1)
    return f"{host}:{int(port) - partition}"


# A quiesced group as its leader announces it, ``(partition, term, last index)``: the leader's
# log ends at that index and term, committed and applied on every replica.
Quiet = tuple[int, int, int]


def beacon(incarnation: str, seq: int, quiet: Iterable[Quiet]) -> dict[str, Any]:
    return {"type": BEACON, "inc": incarnation, "seq": seq, "q": list(quiet)}


@dataclass(frozen=True, slots=True)
class Beacon:
    incarnation: str
    seq: int
    quiet: Mapping[int, tuple[int, int]]  # partition -> (term, last index)

    @classmethod
    def parse(cls, message: Mapping[str, Any]) -> Beacon:
        """Raises ValueError (KeyError, TypeError) on a malformed message."""
        quiet = {int(p): (int(t), int(i)) for p, t, i in message["q"]}
        return cls(incarnation=str(message["inc"]), seq=int(message["seq"]), quiet=quiet)


@dataclass(frozen=True, slots=True)
class PeerState:
    incarnation: str
    seq: int
    heard_at: float


class Liveness:
    """When each peer node was last heard by beacon (one writer: the ticker thread)."""

    def __init__(self) -> None:
        self._peers: dict[str, PeerState] = {}

    def classify(self, node: str, b: Beacon) -> str:
        """'stale' (an older beacon overtaken by a newer one on another connection: ignore
        it), 'restarted' (a new process under that node key), or 'ok'."""
        prev = self._peers.get(node)
        if prev is None:
            return "ok"
        if prev.incarnation != b.incarnation:
            return "restarted"
        return "stale" if b.seq <= prev.seq else "ok"

    def record(self, node: str, b: Beacon, now: float) -> None:
        self._peers[node] = PeerState(b.incarnation, b.seq, now)

    def heard_at(self, node: str) -> float:
        peer = self._peers.get(node)
        return float("-inf") if peer is None else peer.heard_at

    def fresh(self, node: str, now: float, within: float) -> bool:
        return now - self.heard_at(node) <= within


@dataclass(frozen=True, slots=True)
class LeaderView:
    """What decides whether a leader may quiesce its group (read in the ticker thread)."""

    term: int
    last_index: int
    commit_index: int
    last_applied: int
    match_indexes: Mapping[str, int]  # follower node key -> match index
    idle_for: float  # since the log or the commit index last moved
    busy: bool  # queued commands, a transfer, pending reads, a snapshot being written
    peers_support: bool  # every follower confirmed it understands quiescing


def leader_may_quiesce(v: LeaderView, *, idle_s: float, peers_fresh: bool) -> bool:
    """Every follower holds and applies exactly the leader's log (so it accepts the beacon's
    ``(term, index)``), nothing has moved for ``idle_s`` (the last commit index reached the
    followers on the heartbeats since), and every follower's node is heard by beacon."""
    if v.busy or not v.peers_support or not peers_fresh or v.idle_for < idle_s:
        return False
    if not (v.last_index == v.commit_index == v.last_applied):
        return False
    return all(m == v.last_index for m in v.match_indexes.values())


@dataclass(frozen=True, slots=True)
class FollowerView:
    term: int
    leader_node: str | None
    last_index: int
    commit_index: int
    last_applied: int
    busy: bool


def follower_may_quiesce(v: FollowerView, sender: str, term: int, index: int) -> bool:
    """A follower quiesces only at the very state its leader announced: same term, that leader,
    and the announced last entry is its own last entry, committed and applied."""
    return (
        not v.busy
        and v.leader_node == sender
        and v.term == term
        and v.last_index == v.commit_index == v.last_applied == index
    )
