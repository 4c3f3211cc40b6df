"""Quiesced Raft groups (``kvnode.raft.quiesce``) on real groups over real sockets.

Idle groups stop heartbeating and are no longer ticked; a write wakes exactly its group and the
group quiesces again; a ReadIndex read is served without waking anyone; and when the node that
leads quiesced groups goes away, its beacons stop and the followers elect new leaders within an
election timeout, while the groups it only followed keep their leaders and terms.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Callable

import pytest
from kvnode.core.ops import Put
from kvnode.raft import commands, compat

from tests.integration.raft_trio import FAST, Trio, until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
PARTITIONS = 6
QUICK = dataclasses.replace(FAST, quiesce_idle_s=0.5)


@pytest.fixture
async def trio(tmp_path) -> AsyncIterator[Trio]:
    t = Trio(str(tmp_path), partitions=PARTITIONS, tuning=QUICK)
    try:
        for i in range(3):
            await t.start(i)
        for p in range(PARTITIONS):
            await t.leader(p)
        yield t
    finally:
        await t.stop_all()


def _quiet(trio: Trio, nodes: list[int], partitions: list[int]) -> list[tuple[int, int]]:
    """(node, partition) replicas not quiesced yet."""
    return [(i, p) for i in nodes for p in partitions if not trio.replica(i, p).quiesced]


async def _all_quiesced(trio: Trio, nodes: list[int], timeout: float = 30.0) -> None:
    await until(
        lambda: not _quiet(trio, nodes, list(range(PARTITIONS))),
        timeout=timeout,
        what=f"every replica on nodes {nodes} quiesced",
    )


async def _write(trio: Trio, p: int, key: str) -> None:
    gm = trio.gm(await trio.leader(p))
    cmd = commands.WriteCmd(ops=(Put(key=key, value="v"),), now_ms=0)
    await gm.propose(p, cmd, timeout=10)


async def test_idle_groups_stop_ticking_and_a_write_wakes_only_its_group(trio: Trio) -> None:
    await _all_quiesced(trio, [0, 1, 2])
    terms = {p: trio.term(0, p) for p in range(PARTITIONS)}
    leaders = {p: trio.leaders(p) for p in range(PARTITIONS)}

    # Asleep, a node ticks a group only when a beacon lands on its connection: a few ticks per
    # heartbeat period in all, where awake groups were ticked every 50 ms each.
    before = [trio.gm(i).ticker.group_ticks for i in range(3)]
    wakes = [dict(trio.gm(i).quiescer.wakes) for i in range(3)]
    started = time.monotonic()
    await asyncio.sleep(3 * QUICK.election_max_s)  # several election timeouts without heartbeats
    elapsed = time.monotonic() - started
    ticks = [trio.gm(i).ticker.group_ticks - before[i] for i in range(3)]
    awake_ticks = PARTITIONS * elapsed / 0.05
    assert all(t < awake_ticks / 4 for t in ticks), (ticks, awake_ticks)
    # ... and nobody timed out: no election, no term change, everyone still quiesced.
    assert {p: trio.term(0, p) for p in range(PARTITIONS)} == terms
    assert {p: trio.leaders(p) for p in range(PARTITIONS)} == leaders
    assert not _quiet(trio, [0, 1, 2], list(range(PARTITIONS)))
    # Nothing woke meanwhile (a heartbeat or its answer still in flight when a group quiesced
    # used to wake it, again and again).
    assert [dict(trio.gm(i).quiescer.wakes) for i in range(3)] == wakes

    await _write(trio, 2, "woken")
    others = [p for p in range(PARTITIONS) if p != 2]
    assert not _quiet(trio, [0, 1, 2], others), "a write to partition 2 woke other groups"
    await trio.converged(2, [0, 1, 2])
    await until(
        lambda: not _quiet(trio, [0, 1, 2], [2]), timeout=30, what="partition 2 quiesced again"
    )
    assert trio.term(0, 2) == terms[2]
    li = leaders[2][0]
    assert trio.gm(li).quiescer.wakes["proposal"] >= 1


async def test_readindex_read_is_served_without_waking_the_group(trio: Trio) -> None:
    await _all_quiesced(trio, [0, 1, 2])
    li = await trio.leader(0)
    wakes = [dict(trio.gm(i).quiescer.wakes) for i in range(3)]
    for _ in range(5):
        await trio.gm(li).read_barrier(0, timeout=5)
    assert trio.replica(li, 0).quiesced
    assert not _quiet(trio, [0, 1, 2], [0])
    assert [dict(trio.gm(i).quiescer.wakes) for i in range(3)] == wakes


async def test_quiesced_groups_fail_over_within_the_election_timeout(trio: Trio) -> None:
    await _all_quiesced(trio, [0, 1, 2])
    led = {i: [p for p in range(PARTITIONS) if trio.leaders(p) == [i]] for i in range(3)}
    gone = max(led, key=lambda i: len(led[i]))
    assert led[gone], led
    rest = [i for i in range(3) if i != gone]
    kept = {
        p: (trio.leaders(p), trio.term(rest[0], p)) for p in range(PARTITIONS) if p not in led[gone]
    }

    stopped = time.monotonic()
    await trio.stop(gone)  # its sockets close; no group message says so: its beacons stop

    def failed_over() -> list[int]:
        return [p for p in led[gone] if not trio.leaders(p)]

    await until(
        lambda: not failed_over(), timeout=30, what="new leaders for the stopped node's partitions"
    )
    took = time.monotonic() - stopped
    # Raft's bound: the last beacon (at most a heartbeat before the stop) plus the randomised
    # election timeout, then a pre-vote and a vote round trip; plus slack for a loaded machine.
    bound = QUICK.heartbeat_s + QUICK.election_max_s + 4 * QUICK.heartbeat_s + 1.0
    assert took <= bound, f"fail-over took {took:.2f}s, bound {bound:.2f}s"
    # In each such group the first follower to wake did so because the beacons stopped (the
    # other may be woken first by its vote request).
    silent = [trio.gm(i).quiescer.wakes["leader_silent"] for i in rest]
    assert sum(silent) >= len(led[gone]), (silent, led[gone])
    # The groups the stopped node only followed kept their leader and term: their leaders woke
    # (a member went silent) and heartbeat the remaining majority.
    for p, (leaders, term) in kept.items():
        assert trio.leaders(p) == leaders, p
        assert trio.term(rest[0], p) == term, p
    for p in led[gone]:
        await _write(trio, p, f"after-{p}")
        await trio.converged(p, rest)


async def test_a_restarted_follower_node_rejoins_quiesced_groups(trio: Trio) -> None:
    await _all_quiesced(trio, [0, 1, 2])
    led = {p: trio.leaders(p)[0] for p in range(PARTITIONS)}
    follower = next(i for i in range(3) if sum(1 for v in led.values() if v == i) < PARTITIONS)
    mine = [p for p in range(PARTITIONS) if led[p] != follower]
    terms = {p: trio.term(led[p], p) for p in mine}
    await trio.stop(follower)
    await trio.start(follower)  # a new process: new incarnation, empty liveness table
    for p in mine:
        await _write(trio, p, f"after-restart-{p}")
        await trio.converged(p, [0, 1, 2])
    # The leaders woke for the restarted member and kept their leadership and term ...
    assert {p: trio.leaders(p)[0] for p in mine} == {p: led[p] for p in mine}
    assert {p: trio.term(led[p], p) for p in mine} == terms
    # ... and everything goes back to sleep, the restarted node's replicas included.
    await _all_quiesced(trio, [0, 1, 2])


async def test_a_heartbeat_in_flight_at_quiescence_wakes_nobody_but_a_new_one_does(
    trio: Trio,
) -> None:
    await _all_quiesced(trio, [0, 1, 2])
    li = await trio.leader(0)
    fi = next(i for i in range(3) if i != li)
    leader, follower = trio.replica(li, 0), trio.replica(fi, 0)
    term, index = trio.on(li, lambda: leader.quiet_at)
    straggler = {
        "type": "append_entries",
        "term": term,
        "commit_index": index,
        "prevLogIdx": index,
        "prevLogTerm": term,
    }
    answer = {"type": "next_node_idx", "next_node_idx": index + 1, "reset": False, "success": True}
    wakes = [dict(trio.gm(i).quiescer.wakes) for i in range(3)]
    # Each straggler is followed on the same connection by a feature question, answered asleep:
    # once the answer is back, the straggler before it has been handled.
    await _then_ask(trio, li, fi, lambda: leader.send_raw(trio.addr(fi, 0), straggler))
    await _then_ask(trio, fi, li, lambda: follower.send_raw(trio.addr(li, 0), answer))
    assert leader.quiesced
    assert follower.quiesced
    assert [dict(trio.gm(i).quiescer.wakes) for i in range(3)] == wakes
    # A heartbeat that does not describe the quiesced state (here: an older commit index) wakes
    # the follower. (The leader's next beacon may put it back to sleep at once: count the wake.)
    stale = {**straggler, "commit_index": index - 1}
    trio.on(li, lambda: leader.send_raw(trio.addr(fi, 0), stale))
    await until(
        lambda: trio.gm(fi).quiescer.wakes["message"] > wakes[fi]["message"],
        timeout=10,
        what="the follower woken by a stale heartbeat",
    )
    assert trio.gm(fi).quiescer.wakes["message"] == wakes[fi]["message"] + 1
    assert trio.gm(li).quiescer.wakes == wakes[li]


async def _then_ask(trio: Trio, src: int, dst: int, send: Callable[[], None]) -> None:
    """Run ``send`` in node ``src``'s ticker, then ask ``dst`` (partition 0) for its features
    over the same connection and wait for the answer."""
    replica = trio.replica(src, 0)
    peer = trio.addr(dst, 0)

    def asked_at() -> float:
        return float(replica._peer_features.get(peer, (float("-inf"),))[0])

    before = trio.on(src, asked_at)

    def send_then_ask() -> None:
        send()
        replica.send_raw(peer, {"type": compat.FEATURES_ASK})

    trio.on(src, send_then_ask)
    await until(lambda: trio.on(src, asked_at) > before, timeout=10, what=f"{peer}'s features")


async def test_a_read_after_the_connection_timeout_is_served_without_waking_the_group(
    trio: Trio,
) -> None:
    """PySyncObj declares a connection dead when nothing was read on it for its connection
    timeout, and checks that on the connection's next event or send. A quiesced group's
    connections carry nothing, so the first ReadIndex probe after a quiet spell closed the
    connection it was sent on (and the answer's, on the follower) and was lost: the read
    expired, and a quiesced group never reconnected, so every later read of that partition
    failed too (a TLS cluster's backup Job retried one partition for minutes in the e2e)."""
    await _all_quiesced(trio, [0, 1, 2])
    leaders = {p: await trio.leader(p) for p in range(PARTITIONS)}
    wakes = [dict(trio.gm(i).quiescer.wakes) for i in range(3)]
    quiet_s = max(3.5, QUICK.election_max_s) + 1.0  # tuning.syncobj_conf's connectionTimeout
    await asyncio.sleep(quiet_s)  # the time itself is the condition: connections idle past it
    # Every partition: beacons keep one connection per node pair busy, the others sat idle.
    for _ in range(2):
        for p, li in leaders.items():
            await trio.gm(li).read_barrier(p, timeout=2)
    assert not _quiet(trio, [0, 1, 2], list(range(PARTITIONS)))
    assert [dict(trio.gm(i).quiescer.wakes) for i in range(3)] == wakes


async def test_a_quiesced_leader_without_connections_wakes_to_serve_a_read(trio: Trio) -> None:
    """Connections of a quiesced group that closed stay closed (only an awake group's tick
    reconnects): a probe that cannot be sent wakes the group, which reconnects and serves."""
    await _all_quiesced(trio, [0, 1, 2])
    li = await trio.leader(0)
    followers = [i for i in range(3) if i != li]
    for f in followers:  # close both ends' connections; healed at once, but nobody reconnects
        await trio.cut(li, f, 0)
        await trio.heal(li, f, 0)
    before = trio.gm(li).quiescer.wakes["read_unsent"]
    await trio.gm(li).read_barrier(0, timeout=5)
    assert trio.gm(li).quiescer.wakes["read_unsent"] == before + 1
    await until(lambda: not _quiet(trio, [0, 1, 2], [0]), timeout=30, what="quiesced again")
