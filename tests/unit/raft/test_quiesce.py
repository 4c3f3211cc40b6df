"""The pure decisions of quiescing (kvnode.raft.quiesce) and the node's Quiescer over fake
replicas (the Raft side is exercised for real in tests/integration/test_quiesce*.py)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kvnode.raft import quiesce
from kvnode.raft.quiescer import Quiescer

LEADER = quiesce.LeaderView(
    term=3,
    last_index=10,
    commit_index=10,
    last_applied=10,
    match_indexes={"b:100": 10, "c:200": 10},
    idle_for=5.0,
    busy=False,
    peers_support=True,
)


def test_node_key_strips_the_partition_from_the_port() -> None:
    assert quiesce.node_key("10.0.0.1:17005", 5) == "10.0.0.1:17000"
    assert quiesce.node_key("demo-1.demo.ns.svc:17012", 12) == "demo-1.demo.ns.svc:17000"


def test_an_idle_fully_replicated_leader_quiesces() -> None:
    assert quiesce.leader_may_quiesce(LEADER, idle_s=2.0, peers_fresh=True)


@pytest.mark.parametrize(
    ("change", "fresh"),
    [
        ({"idle_for": 1.0}, True),  # moved recently
        ({"busy": True}, True),  # proposals, a transfer or reads pending
        ({"peers_support": False}, True),  # a follower of an older release
        ({"commit_index": 9}, True),  # last entry not committed
        ({"last_applied": 9}, True),  # ... or not applied here
        ({"match_indexes": {"b:100": 10, "c:200": 9}}, True),  # a follower behind
        ({}, False),  # a follower's node not heard lately
    ],
)
def test_a_leader_with_anything_outstanding_stays_awake(change: dict, fresh: bool) -> None:
    view = dataclasses.replace(LEADER, **change)
    assert not quiesce.leader_may_quiesce(view, idle_s=2.0, peers_fresh=fresh)


FOLLOWER = quiesce.FollowerView(
    term=3, leader_node="a:0", last_index=10, commit_index=10, last_applied=10, busy=False
)


def test_a_follower_quiesces_only_at_the_announced_state() -> None:
    assert quiesce.follower_may_quiesce(FOLLOWER, "a:0", 3, 10)
    assert not quiesce.follower_may_quiesce(FOLLOWER, "b:0", 3, 10)  # not its leader
    assert not quiesce.follower_may_quiesce(FOLLOWER, "a:0", 4, 10)  # another term
    assert not quiesce.follower_may_quiesce(FOLLOWER, "a:0", 3, 11)  # it lacks an entry
    behind = dataclasses.replace(FOLLOWER, commit_index=9)
    assert not quiesce.follower_may_quiesce(behind, "a:0", 3, 10)
    unapplied = dataclasses.replace(FOLLOWER, last_applied=9)
    assert not quiesce.follower_may_quiesce(unapplied, "a:0", 3, 10)
    busy = dataclasses.replace(FOLLOWER, busy=True)
    assert not quiesce.follower_may_quiesce(busy, "a:0", 3, 10)


@given(st.lists(st.tuples(st.integers(0, 1023), st.integers(0, 10**6), st.integers(0, 10**9))))
def test_a_beacon_round_trips(quiet: list[tuple[int, int, int]]) -> None:
    b = quiesce.Beacon.parse(quiesce.beacon("inc", 7, quiet))
    assert b.incarnation == "inc"
    assert b.seq == 7
    assert b.quiet == {p: (t, i) for p, t, i in quiet}


@pytest.mark.parametrize(
    "message", [{}, {"inc": "x", "seq": 1}, {"inc": "x", "seq": 1, "q": [[1, 2]]}]
)
def test_a_malformed_beacon_is_refused(message: dict) -> None:
    with pytest.raises((KeyError, TypeError, ValueError)):
        quiesce.Beacon.parse(message)


def test_liveness_ignores_overtaken_beacons_and_notices_a_restart() -> None:
    live = quiesce.Liveness()
    b = lambda inc, seq: quiesce.Beacon(inc, seq, {})  # noqa: E731
    assert live.classify("n", b("one", 2)) == "ok"
    live.record("n", b("one", 2), 10.0)
    assert live.classify("n", b("one", 1)) == "stale"  # an older one on another connection
    assert live.classify("n", b("one", 2)) == "stale"
    assert live.heard_at("n") == 10.0
    assert live.classify("n", b("two", 1)) == "restarted"
    live.record("n", b("two", 1), 12.0)
    assert live.fresh("n", 12.5, within=1.0)
    assert not live.fresh("n", 13.5, within=1.0)
    assert not live.fresh("unknown", 0.0, within=1.0)


# -- the Quiescer over fake replicas ----------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Node:
    id: str


class FakeReplica:
    """What the Quiescer uses of a CompatSyncObj."""

    def __init__(self, partition: int, me: str, peers: list[str], *, leader: str | None) -> None:
        self.partition = partition
        self.me = me
        self.peers = [Node(p) for p in peers]
        self.leader = leader  # address of the leader
        self.quiesced = False
        self.quiesce_leader: str | None = None
        self.quiet_at = (-1, -1)
        self.quiesce_wanted_at = float("-inf")
        self.term, self.index = 2, 5
        self.idle_for = 10.0
        self.woken: list[str] = []
        self.sent: list[tuple[str, dict]] = []
        self.reading = False  # ReadIndex reads or follower-read questions pending

    def reads_pending(self) -> bool:
        return self.reading

    def other_nodes(self) -> list[Node]:
        return self.peers

    def quiesce_leader_view(self, key_of: Any) -> quiesce.LeaderView | None:
        if self.quiesced or self.leader != self.me:
            return None
        return quiesce.LeaderView(
            term=self.term,
            last_index=self.index,
            commit_index=self.index,
            last_applied=self.index,
            match_indexes={key_of(n.id): self.index for n in self.peers},
            idle_for=self.idle_for,
            busy=False,
            peers_support=True,
        )

    def quiesce_follower_view(self, key_of: Any) -> quiesce.FollowerView | None:
        if self.leader == self.me:
            return None
        return quiesce.FollowerView(
            term=self.term,
            leader_node=None if self.leader is None else key_of(self.leader),
            last_index=self.index,
            commit_index=self.index,
            last_applied=self.index,
            busy=False,
        )

    def quiesce(self, leader: str | None) -> None:
        self.quiesced, self.quiesce_leader = True, leader
        self.quiet_at = (self.term, self.index)

    def wake(self, reason: str) -> None:
        if self.quiesced:
            self.quiesced, self.quiesce_leader = False, None
            self.woken.append(reason)
            self.quiescer.woke(self, reason)

    def send_beacon(self, node: Node, message: dict) -> bool:
        self.sent.append((node.id, message))
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr("kvnode.raft.compat._clock", c)
    return c


def node(i: int, p: int) -> str:
    return f"h:{1000 * i + p}"  # node i has raft_port_base 1000·i


def make(me: int, leaders: dict[int, int]) -> tuple[Quiescer, dict[int, FakeReplica], list]:
    replicas = {
        p: FakeReplica(
            p, node(me, p), [node(i, p) for i in range(3) if i != me], leader=node(lead, p)
        )
        for p, lead in leaders.items()
    }
    events: list = []
    q = Quiescer(
        replicas,
        idle_s=2.0,
        heartbeat_s=0.1,
        fresh_s=1.0,
        on_sleep=lambda r: events.append(("sleep", r.partition)),
        on_wake=lambda r: events.append(("wake", r.partition)),
    )
    for r in replicas.values():
        r.quiescer = q
    return q, replicas, events


def beacon_from(q: Quiescer, sender: int, replicas: dict[int, FakeReplica], msg: dict) -> None:
    p = next(iter(replicas))
    q.on_beacon(replicas[p], Node(node(sender, p)), msg)


def test_leader_quiesces_once_its_peers_are_heard_and_beacons_list_the_group(clock) -> None:
    q, replicas, events = make(0, {0: 0, 1: 1})
    q.on_round()
    assert not replicas[0].quiesced  # peers never heard: stays awake
    for sender in (1, 2):
        beacon_from(q, sender, replicas, quiesce.beacon(f"n{sender}", 1, []))
    clock.now += 0.2
    q.on_round()
    assert replicas[0].quiesced
    assert replicas[0].quiesce_leader is None
    assert ("sleep", 0) in events
    last = {quiesce.node_key(dest, r.partition): m for r in replicas.values() for dest, m in r.sent}
    # Each peer node gets one beacon per round, listing the groups quiesced with it as member.
    assert last["h:1000"]["q"] == [(0, 2, 5)]
    assert last["h:2000"]["q"] == [(0, 2, 5)]
    assert last["h:1000"]["seq"] == last["h:2000"]["seq"]


def test_follower_sleeps_on_a_listing_beacon_and_wakes_when_the_leader_falls_silent(
    clock,
) -> None:
    q, replicas, events = make(1, {0: 0})
    beacon_from(q, 0, replicas, quiesce.beacon("n0", 1, [(0, 2, 5)]))
    assert replicas[0].quiesced
    assert replicas[0].quiesce_leader == "h:0"
    clock.now += 0.5
    beacon_from(q, 0, replicas, quiesce.beacon("n0", 2, [(0, 2, 5)]))
    q.on_round()
    assert replicas[0].quiesced  # heard 0 s ago
    clock.now += 1.1
    q.on_round()
    assert not replicas[0].quiesced
    assert replicas[0].woken == ["leader silent"]
    assert q.wakes["leader_silent"] == 1
    assert events[-1] == ("wake", 0)


def test_follower_wakes_when_the_beacon_stops_listing_it_or_names_another_state(clock) -> None:
    q, replicas, _ = make(1, {0: 0, 3: 0})
    beacon_from(q, 0, replicas, quiesce.beacon("n0", 1, [(0, 2, 5), (3, 2, 5)]))
    assert replicas[0].quiesced
    assert replicas[3].quiesced
    beacon_from(q, 0, replicas, quiesce.beacon("n0", 2, [(3, 2, 6)]))
    assert replicas[0].woken == ["leader awake"]
    assert replicas[3].woken == ["leader awake"]


def test_an_overtaken_beacon_does_not_put_a_woken_follower_back_to_sleep(clock) -> None:
    q, replicas, _ = make(1, {0: 0})
    beacon_from(q, 0, replicas, quiesce.beacon("n0", 5, []))
    beacon_from(q, 0, replicas, quiesce.beacon("n0", 4, [(0, 2, 5)]))
    assert not replicas[0].quiesced


def test_a_restarted_peer_wakes_every_quiesced_group_it_belongs_to(clock) -> None:
    q, replicas, _ = make(1, {0: 0, 1: 1})
    beacon_from(q, 0, replicas, quiesce.beacon("n0", 1, [(0, 2, 5)]))
    replicas[1].quiesce(None)
    assert replicas[0].quiesced
    beacon_from(q, 0, replicas, quiesce.beacon("n0-again", 1, []))
    assert replicas[0].woken == ["peer restarted"]
    assert replicas[1].woken == ["peer restarted"]


def test_a_quiesced_leader_wakes_when_a_member_falls_silent(clock) -> None:
    q, replicas, _ = make(0, {0: 0})
    for sender in (1, 2):
        beacon_from(q, sender, replicas, quiesce.beacon(f"n{sender}", 1, []))
    q.on_round()
    assert replicas[0].quiesced
    clock.now += 0.6
    beacon_from(q, 1, replicas, quiesce.beacon("n1", 2, []))  # node 2 says nothing more
    clock.now += 0.6
    q.on_round()
    assert replicas[0].woken == ["member silent"]


def test_quiescing_off_still_sends_beacons(clock) -> None:
    replicas = {0: FakeReplica(0, node(0, 0), [node(1, 0)], leader=node(0, 0))}
    q = Quiescer(
        replicas,
        idle_s=0,
        heartbeat_s=0.1,
        fresh_s=1.0,
        on_sleep=lambda r: None,
        on_wake=lambda r: None,
    )
    beacon_from(q, 1, replicas, quiesce.beacon("n1", 1, []))
    q.on_round()
    assert not replicas[0].quiesced
    assert [m["type"] for _, m in replicas[0].sent] == [quiesce.BEACON]


def test_reads_pending_at_two_rounds_in_a_row_wake_their_quiesced_group(clock) -> None:
    q, replicas, _ = make(0, {0: 0, 1: 0, 2: 1})  # leads 0 and 1, follows 2
    for sender in (1, 2):
        beacon_from(q, sender, replicas, quiesce.beacon(f"n{sender}", 1, []))
    clock.now += 0.2
    q.on_round()
    beacon_from(q, 1, replicas, quiesce.beacon("n1", 2, [(2, 2, 5)]))
    assert all(r.quiesced for r in replicas.values())
    replicas[0].reading = replicas[2].reading = True  # a leader's and a follower's read
    q.read_sent(0)
    q.read_sent(2)
    clock.now += 0.1
    q.on_round()
    assert all(r.quiesced for r in replicas.values())  # one round: reads answer within one
    replicas[2].reading = False  # the follower's read was answered meanwhile
    beacon_from(q, 1, replicas, quiesce.beacon("n1", 3, [(2, 2, 5)]))
    beacon_from(q, 2, replicas, quiesce.beacon("n2", 2, []))
    clock.now += 0.1
    q.on_round()
    assert replicas[0].woken == ["read stalled"]
    assert replicas[1].quiesced
    assert replicas[2].quiesced
    assert q.wakes["read_stalled"] == 1
    replicas[2].reading = True  # pending at this round only: not yet
    q.read_sent(2)
    beacon_from(q, 1, replicas, quiesce.beacon("n1", 4, [(2, 2, 5)]))
    beacon_from(q, 2, replicas, quiesce.beacon("n2", 3, []))
    clock.now += 0.1
    q.on_round()
    assert replicas[2].quiesced


def test_a_quiesced_group_that_sent_no_read_is_not_watched(clock) -> None:
    q, replicas, _ = make(0, {0: 0})
    for sender in (1, 2):
        beacon_from(q, sender, replicas, quiesce.beacon(f"n{sender}", 1, []))
    clock.now += 0.2
    q.on_round()
    replicas[0].reading = True  # pending, but never reported as sent: the round does not look
    for _ in range(3):
        clock.now += 0.1
        beacon_from(q, 1, replicas, quiesce.beacon("n1", 9, []))
        beacon_from(q, 2, replicas, quiesce.beacon("n2", 9, []))
        q.on_round()
    assert replicas[0].quiesced
