"""The node's side of quiescing (``kvnode.raft.quiesce``): beacons out, beacons in, and which
group sleeps or wakes. Everything here runs in the shared ticker thread.

The work per heartbeat period is proportional to the node's peers, its quiesced leaderships and
the reads its quiesced groups sent, not to every replica it hosts: an idle node with hundreds of
partitions must cost next to nothing, and this loop is what remains of its Raft work."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from kvnode.raft import compat, quiesce

log = logging.getLogger(__name__)

WAKE_REASONS = (
    "proposal",
    "transfer",
    "message",
    "role_changed",
    "leader_silent",
    "leader_awake",
    "member_silent",
    "peer_restarted",
    "read_unsent",
    "read_stalled",
)
_ROUTES_EVERY_S = 2.0  # how often the set of peer nodes (and connections to reach them) is redone


class Quiescer:
    """Quiesces idle groups of this node and keeps the beacons going.

    ``replicas`` is the node's live partition -> replica mapping (``CompatSyncObj``), read in
    the ticker thread only. ``on_sleep`` / ``on_wake`` tell the ticker (and the status cache)
    that a group stopped or resumed needing timer ticks. ``idle_s`` 0 turns quiescing off
    (beacons are still exchanged, so a node of this release lets its peers' groups quiesce)."""

    def __init__(
        self,
        replicas: Mapping[int, Any],
        *,
        idle_s: float,
        heartbeat_s: float,
        fresh_s: float,
        on_sleep: Callable[[Any], None],
        on_wake: Callable[[Any], None],
    ) -> None:
        self._replicas = replicas
        self._idle_s = idle_s
        self._period_s = heartbeat_s
        self._fresh_s = fresh_s  # a node heard within this long counts as alive
        self._on_sleep = on_sleep
        self._on_wake = on_wake
        self.liveness = quiesce.Liveness()
        self._incarnation = os.urandom(8).hex()
        self._seq = 0
        self._next_round = float("-inf")
        self._routes: dict[str, list[tuple[int, Any]]] = {}  # node key -> (partition, peer node)
        self._routes_at = float("-inf")
        self._routes_for = -1  # how many replicas the routes were built for
        self._asleep_under: dict[str, set[int]] = {}  # leader node key -> quiesced followers
        self._leading: dict[int, tuple[quiesce.Quiet, tuple[str, ...]]] = {}  # quiesced leaders
        # Fixed keys: another thread reads it at scrape time.
        self.wakes: dict[str, int] = dict.fromkeys(WAKE_REASONS, 0)
        self.bad_beacons = 0
        self._read_sent: set[int] = set()  # quiesced partitions that sent a read since the round
        self._reading: set[int] = set()  # quiesced partitions with reads pending at the last round

    # -- what replicas call --------------------------------------------------------------------
    def heard_at(self, replica: Any, node: Any) -> float:
        return self.liveness.heard_at(quiesce.node_key(str(node.id), replica.partition))

    def heard_at_key(self, key: str) -> float:
        return self.liveness.heard_at(key)

    def woke(self, replica: Any, reason: str) -> None:
        label = "message" if reason.startswith("message") else reason.replace(" ", "_")
        if label in self.wakes:
            self.wakes[label] += 1
        self.forget(replica.partition)
        self._on_wake(replica)
        log.debug("partition %d: woke (%s)", replica.partition, reason)

    def on_beacon(self, carrier: Any, node: Any, message: Mapping[str, Any]) -> None:
        """A beacon from the node behind ``node`` arrived over ``carrier``'s connection."""
        sender = quiesce.node_key(str(node.id), carrier.partition)
        try:
            b = quiesce.Beacon.parse(message)
        except (KeyError, TypeError, ValueError):
            if self.bad_beacons % 1000 == 0:  # the first, then every 1000th
                log.warning("malformed beacon from %s ignored: %r", sender, message)
            self.bad_beacons += 1
            return
        verdict = self.liveness.classify(sender, b)
        if verdict == "stale":
            return
        if verdict == "restarted":
            # A new process: whatever it led or followed is gone. Woken before the beacon is
            # recorded, a follower's leader contact stays the old process's last beacon.
            for p, replica in list(self._replicas.items()):
                if replica.quiesced and sender in _member_keys(replica, p):
                    replica.wake("peer restarted")
        self.liveness.record(sender, b, compat._clock())
        asleep = self._asleep_under.setdefault(sender, set())
        for p in list(asleep):
            replica = self._replicas.get(p)
            if replica is None or not replica.quiesced:
                asleep.discard(p)
            elif replica.quiet_at != b.quiet.get(p):
                replica.wake("leader awake")  # the leader woke (or moved on): so do we
        for p, (term, index) in b.quiet.items():
            if p in asleep:
                continue
            replica = self._replicas.get(p)
            if replica is None or replica.quiesced:
                continue
            view = replica.quiesce_follower_view(_key_of(p))
            if view is not None and quiesce.follower_may_quiesce(view, sender, term, index):
                replica.quiesce(sender)
                asleep.add(p)
                self._on_sleep(replica)

    def read_sent(self, partition: int) -> None:
        """A quiesced replica of ``partition`` sent a ReadIndex probe or a follower-read
        question (``CompatSyncObj.ri_send``)."""
        self._read_sent.add(partition)

    def forget(self, partition: int) -> None:
        """The replica of ``partition`` is closed (a new one may open under the same number)."""
        self._leading.pop(partition, None)
        for asleep in self._asleep_under.values():
            asleep.discard(partition)

    # -- the round (a full-tick hook) ------------------------------------------------------------
    def on_round(self) -> None:
        now = compat._clock()
        if now < self._next_round:
            return
        self._next_round = now + self._period_s
        self._wake_the_unheard(now)
        self._wake_stalled_reads()
        if self._idle_s > 0:
            self._quiesce_idle_leaders(now)
        self._send_beacons(now)

    def _wake_the_unheard(self, now: float) -> None:
        """Followers whose leader's node fell silent, and leaders one of whose members did."""
        for leader, asleep in self._asleep_under.items():
            if asleep and not self.liveness.fresh(leader, now, self._fresh_s):
                for p in list(asleep):
                    replica = self._replicas.get(p)
                    if replica is not None:
                        replica.wake("leader silent")
                asleep.clear()
        for p, (_, members) in list(self._leading.items()):
            if not all(self.liveness.fresh(m, now, self._fresh_s) for m in members):
                replica = self._replicas.get(p)
                if replica is not None:
                    replica.wake("member silent")
                self._leading.pop(p, None)

    def _wake_stalled_reads(self) -> None:
        """A quiesced group is ticked only when one of its sockets fires, so a read whose probe
        or answer was lost (a connection that died without a word) would wait out its deadline,
        and so would every read after it. Reads pending at two rounds in a row (one heartbeat
        period apart; an answered round takes one round trip) wake their group, which then
        resends each period and reconnects as any awake group does."""
        candidates, self._read_sent = self._read_sent | self._reading, set()
        reading = set()
        for p in candidates:
            replica = self._replicas.get(p)
            if replica is not None and replica.quiesced and replica.reads_pending():
                reading.add(p)
        for p in reading & self._reading:
            self._replicas[p].wake("read stalled")
        self._reading = reading - self._reading

    def _quiesce_idle_leaders(self, now: float) -> None:
        for p, replica in list(self._replicas.items()):
            if replica.quiesced:
                continue
            view = replica.quiesce_leader_view(_key_of(p))
            if view is None:
                continue
            if view.idle_for >= self._idle_s / 2:
                replica.quiesce_wanted_at = time.monotonic()  # ask peers for their features
            fresh = all(self.liveness.fresh(m, now, self._fresh_s) for m in view.match_indexes)
            if quiesce.leader_may_quiesce(view, idle_s=self._idle_s, peers_fresh=fresh):
                replica.quiesce(None)
                term, index = replica.quiet_at
                self._leading[p] = ((p, term, index), tuple(view.match_indexes))
                self._on_sleep(replica)

    def _send_beacons(self, now: float) -> None:
        if now - self._routes_at >= _ROUTES_EVERY_S or len(self._replicas) != self._routes_for:
            self._build_routes(now)
        quiet: dict[str, list[quiesce.Quiet]] = {}
        for entry, members in self._leading.values():
            for m in members:
                quiet.setdefault(m, []).append(entry)
        self._seq += 1
        for key, routes in self._routes.items():
            message = quiesce.beacon(self._incarnation, self._seq, quiet.get(key, ()))
            for n, (p, node) in enumerate(routes):
                replica = self._replicas.get(p)
                if replica is not None and replica.send_beacon(node, message):
                    if n:
                        routes.insert(0, routes.pop(n))  # the working connection first next time
                    break

    def _build_routes(self, now: float) -> None:
        routes: dict[str, list[tuple[int, Any]]] = {}
        for p, replica in list(self._replicas.items()):
            for node in replica.other_nodes():
                routes.setdefault(quiesce.node_key(str(node.id), p), []).append((p, node))
        for key, options in routes.items():
            old = self._routes.get(key)
            if old:
                first = old[0]
                options.sort(key=lambda o: o != first)  # keep the connection that worked
        self._routes, self._routes_at, self._routes_for = routes, now, len(self._replicas)


def _key_of(partition: int) -> Callable[[str], str]:
    return lambda addr: quiesce.node_key(addr, partition)


def _member_keys(replica: Any, partition: int) -> list[str]:
    return [quiesce.node_key(str(n.id), partition) for n in replica.other_nodes()]
