"""Maintenance drain of a node: no partition led here until undrained.

A drained node keeps its replicas (it still votes and replicates) but leads nothing: it hands
away every leadership it holds or wins (``drain_target``), and no leader hands one to it
(``kvnode.service.housekeeping.handoff_target`` skips drained nodes, which other nodes learn
from the ``drained`` flag in this node's ``GET /v1/admin/partitions``). The flag is persisted in
the data directory (``drain.json``, written atomically and fsynced) so a restart mid-maintenance
does not pull the leaderships back. Undraining clears it and the preferred-leader balancing
returns this node's preferred leaderships.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from kvnode.core import files
from kvnode.core.model import NodeInfo, PartitionMap
from kvnode.raft.groups import ReplicaStatus
from kvnode.service.groups_api import RaftGroups

log = logging.getLogger(__name__)
FILE = "drain.json"


def load(data_dir: str) -> bool:
    """The persisted drain flag (False when never set). A corrupt file is an error."""
    try:
        with open(os.path.join(data_dir, FILE), encoding="utf-8") as f:
            return bool(json.load(f)["drained"])
    except FileNotFoundError:
        return False


def save(data_dir: str, drained: bool) -> None:
    """Persist the flag so that a crash leaves the old or the new value, never a torn file."""
    files.write_json_atomic(os.path.join(data_dir, FILE), {"drained": drained})
    log.info("drain flag saved: %s", drained)


def drain_target(
    pmap: PartitionMap, me: str, p: int, st: ReplicaStatus | None, drained: frozenset[str]
) -> tuple[str, str] | None:
    """(node id, raft address) a drained leader hands partition ``p`` to, or None.

    The first replica in map order (the preferred leader first) that is another node, not
    drained itself, and a connected voter of the group; only when the map states exactly the
    voters this leader sees (as ``handoff_target``). PySyncObj refuses a target whose log is not
    complete, so leadership only moves to an up-to-date voter. None when no such replica exists:
    then the drained node keeps leading rather than leave the partition without a leader.
    """
    if st is None or st.role != "leader" or p >= pmap.partitions:
        return None
    replicas = pmap.replicas[p]
    if not all(pmap.has_node(n) for n in replicas):
        return None
    if {pmap.node(n).raft_addr(p) for n in replicas} != set(st.members):
        return None
    for n in replicas:
        target = pmap.node(n).raft_addr(p)
        if n != me and n not in drained and target in st.connected:
            return n, target
    return None


def led_here(groups: RaftGroups) -> list[int]:
    return [p for p in groups.hosted() if groups.is_leader(p)]


async def until_leaderless(
    groups: RaftGroups, balance: Callable[[], Awaitable[None]], timeout: float
) -> None:
    """Run balancing passes (which hand leaderships away) until this node leads nothing or
    ``timeout`` passes; the caller reports which case it was."""
    deadline = time.monotonic() + timeout
    while True:
        await balance()
        if not led_here(groups) or time.monotonic() >= deadline:
            return
        await asyncio.sleep(min(0.2, max(0.0, deadline - time.monotonic())))


STOP_HANDOFF_STALL_S = 1.0  # a stopping node gives up after this long without progress


async def hand_off_before_stop(
    groups: RaftGroups, balance: Callable[[], Awaitable[None]], timeout: float
) -> list[int]:
    """``until_leaderless`` for a stopping node, which must also see each partition it led
    taken over: stepping down is not enough (the transfer message may still be in flight, and
    if the process dies first the others wait out an election timeout); done once this replica
    follows another leader. Gives up at ``timeout``, or once nothing moved for
    ``STOP_HANDOFF_STALL_S`` (nobody takes them: the peers are stopping too, as at the end of
    a test or a whole-cluster stop). Returns the partitions not handed over."""
    deadline = time.monotonic() + timeout
    started = set(led_here(groups))
    last: list[int] = []
    moved_at = time.monotonic()
    while True:
        await balance()
        pending = sorted(set(led_here(groups)) | {p for p in started if not _taken(groups, p)})
        now = time.monotonic()
        if pending != last:
            last, moved_at = pending, now
        if not pending or now >= deadline or now - moved_at >= STOP_HANDOFF_STALL_S:
            return pending
        await asyncio.sleep(0.1)


def _taken(groups: RaftGroups, p: int) -> bool:
    """This replica follows a leader other than itself (it heard from the new one)."""
    st = groups.status(p)
    return st is not None and st.role != "leader" and st.leader_addr not in (None, st.self_addr)


def report(
    node_id: str,
    drained: bool,
    groups: RaftGroups,
    leader_node: Callable[[int], NodeInfo | None],
) -> dict[str, Any]:
    """``{"node_id", "drained", "complete", "leader_of": [p...], "partitions": [{"partition",
    "leader"}]}`` (leader: node id or None); ``complete``: drained and leading nothing."""
    led = led_here(groups)
    parts = []
    for p in groups.hosted():
        node = leader_node(p)
        parts.append({"partition": p, "leader": None if node is None else node.node_id})
    return {
        "node_id": node_id,
        "drained": drained,
        "complete": drained and not led,
        "leader_of": led,
        "partitions": parts,
    }
