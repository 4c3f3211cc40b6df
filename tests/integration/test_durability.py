"""Group commit acknowledges nothing before it is durable per the configured policy.

Real node processes under a concurrent write load heavy enough that writes share Raft entries
(checked on the nodes' ``ringkv_write_*`` counters before the crash), then SIGKILL of every node
at once, restart, and every acknowledged write is read back with the value and version it was
acknowledged with. Both durability modes: ``process`` relies on the page cache surviving the
processes (the kernel keeps running), ``fsync`` on the journal being on disk on a majority
before the ack; what a power loss adds to ``fsync`` is argued in node/DESIGN.md (§ Durability),
since a test cannot cut the machine's power.
"""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import time

import aiohttp
import pytest
from kvnode import localprocs
from kvnode.client import Client
from kvnode.core import errors

from tests.support.clusters import ClusterHandle

log = logging.getLogger(__name__)
pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

COUNTERS = [f"ctr/{i}" for i in range(4)]


class Load:
    """Unique-key puts and CAS increments of a few counters, recording every outcome."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.acked: dict[str, tuple[str, int]] = {}  # key -> (value, version)
        self.unknown: dict[str, str] = {}
        self.failed: list[str] = []
        self.increments = dict.fromkeys(COUNTERS, 0)  # acknowledged CAS increments
        self.maybe = dict.fromkeys(COUNTERS, 0)  # CAS increments with an unknown outcome
        self.stopped = asyncio.Event()
        self.crashed = False  # errors after the crash are expected, not failures

    def _failed(self, what: str) -> None:
        if not self.crashed:
            self.failed.append(what)

    async def writer(self, w: int) -> None:
        n = 0
        while not self.stopped.is_set():
            key, value = f"w/{w}/{n}", f"v{w}-{n}-" + "x" * 200
            n += 1
            try:
                self.acked[key] = (value, await self.client.put(key, value))
            except errors.UnknownOutcome:
                self.unknown[key] = value
            except errors.KvError as exc:
                self._failed(f"{key}: {exc.code}")

    async def incrementer(self, i: int) -> None:
        key = COUNTERS[i % len(COUNTERS)]
        while not self.stopped.is_set():
            try:
                cur = await self.client.get(key)
                value, version = (0, 0) if cur is None else (int(cur.value), cur.version)
                await self.client.put(key, str(value + 1), if_version=version)
                self.increments[key] += 1
            except errors.PreconditionFailed:
                continue  # another incrementer won: nothing applied, try again
            except errors.UnknownOutcome:
                self.maybe[key] += 1
            except errors.KvError as exc:
                self._failed(f"{key}: {exc.code}")


async def write_counters(handle: ClusterHandle) -> tuple[int, int]:
    """(entries, requests) for client writes, summed over the nodes' metrics."""
    entries = requests = 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        for url in handle.endpoints:
            async with http.get(f"{url}/metrics") as resp:
                text = await resp.text()
            entries += _metric(text, "ringkv_write_entries_total")
            requests += _metric(text, "ringkv_write_requests_total")
    return entries, requests


def _metric(text: str, name: str) -> int:
    found = re.search(rf"^{name}\{{[^}}]*\}} ([0-9.e+]+)$", text, re.MULTILINE)
    assert found, f"{name} missing from /metrics"
    return int(float(found.group(1)))


def kill_every_node_at_once(handle: ClusterHandle) -> None:
    pids = [handle.cluster.pid(n) for n in handle.cluster.node_ids]
    assert all(pids), f"a node is not running before the crash: {pids}"
    for pid in pids:
        localprocs.signal_group(pid, signal.SIGKILL)
    assert not localprocs.wait_gone(pids, timeout=15), "nodes survived SIGKILL"


async def coalesced_under_load(handle: ClusterHandle, load: Load, timeout: float) -> tuple:
    """Wait (bounded) until enough writes were acknowledged and entries carried several."""
    deadline = time.monotonic() + timeout
    counts = (0, 0)
    while time.monotonic() < deadline:
        counts = await write_counters(handle)
        if len(load.acked) >= 300 and counts[1] >= counts[0] + 50:
            return counts
        await asyncio.sleep(0.5)
    raise AssertionError(
        f"no group commit under load within {timeout}s: {len(load.acked)} acknowledged, "
        f"(entries, requests) = {counts}; failures: {load.failed[:5]}"
    )


@pytest.mark.parametrize("durability", ["process", "fsync"])
async def test_kill_9_of_every_node_under_group_commit_loses_no_acknowledged_write(
    make_cluster, durability: str
) -> None:
    handle = make_cluster(partitions=4, env={"KVNODE_DURABILITY": durability})
    await handle.wait_ready(timeout=60)
    async with handle.client(timeout=15.0) as c:
        load = Load(c)
        tasks = [asyncio.create_task(load.writer(w)) for w in range(48)]
        tasks += [asyncio.create_task(load.incrementer(i)) for i in range(8)]
        try:
            entries, requests = await coalesced_under_load(handle, load, timeout=90)
            load.crashed = True
            kill_every_node_at_once(handle)
        finally:
            load.stopped.set()
            await asyncio.wait_for(asyncio.gather(*tasks), 60)
    acked = dict(load.acked)
    log.warning(
        "%s: %d writes and %d increments acknowledged, %d unknown; %d requests in %d entries "
        "before the crash",
        durability,
        len(acked),
        sum(load.increments.values()),
        len(load.unknown) + sum(load.maybe.values()),
        requests,
        entries,
    )
    assert requests > entries, "writes never shared an entry"
    assert all(load.increments[k] > 0 for k in COUNTERS), load.increments
    handle.cluster.start_all()
    await handle.wait_ready(timeout=90)
    async with handle.client(timeout=20.0) as c:
        for key, (value, version) in acked.items():
            entry = await c.get(key)
            assert entry is not None, f"acknowledged write {key} lost ({durability})"
            assert (entry.value, entry.version) == (value, version), key
        for key, value in load.unknown.items():
            entry = await c.get(key)
            assert entry is None or entry.value == value, key
        for key in COUNTERS:
            entry = await c.get(key)
            total = 0 if entry is None else int(entry.value)
            # Every acknowledged increment is there; unknown ones may or may not be.
            assert load.increments[key] <= total <= load.increments[key] + load.maybe[key], key
    assert not load.failed, f"failures before the crash: {load.failed[:10]}"
