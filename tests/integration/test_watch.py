"""Watch on real node processes (issue 13): every change exactly once and in order per key
across a kill -9 of a partition leader (the node the watcher is connected to) and a 3→5
scale-out, resuming from a position; a compacted position's documented error; a stuck watcher
cut off while the node's memory stays bounded (measured)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import socket
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from kvnode.client import BatchOp, Client, WatchEvent
from kvnode.core import errors
from kvnode.local import scale_cluster
from kvnode.rebalance.executor import Options

from tests.support.clusters import eventually
from tests.support.metrics import metric

pytestmark = pytest.mark.integration
log = logging.getLogger(__name__)

FAST = Options(max_concurrent=2, step_timeout_s=90.0, poll_interval_s=0.1)
KEYS = [f"w/{i}" for i in range(40)]


@dataclass
class Acked:
    """What the writers know committed: (kind, key, version) with version the put's new version
    or the removed record's version for a delete; keys some write of which is uncertain."""

    writes: list[tuple[str, str, int]] = field(default_factory=list)
    uncertain: set[str] = field(default_factory=set)
    ttl_keys: list[str] = field(default_factory=list)


async def writer(client: Client, keys: list[str], acked: Acked, stop: asyncio.Event) -> None:
    """Sequential writes on its own keys (so their order is known): puts, CAS, deletes, a
    non-atomic batch, and TTL'd puts whose expiry watchers must see."""
    rng = random.Random(keys[0])
    versions: dict[str, int] = {}
    n = 0
    while not stop.is_set():
        n += 1
        key = rng.choice(keys)
        roll = rng.random()
        try:
            if roll < 0.1 and key in versions:
                d = await client.delete_result(key)
                if d.deleted:
                    acked.writes.append(("delete", key, d.version))
                versions.pop(key, None)
            elif roll < 0.2 and key in versions:
                v = await client.cas(key, f"cas{n}", if_version=versions[key])
                acked.writes.append(("put", key, v))
                versions[key] = v
            elif roll < 0.27:
                other = rng.choice(keys)
                if other == key:
                    continue
                res = await client.batch([BatchOp.put(key, f"b{n}"), BatchOp.put(other, f"b{n}")])
                for item in res.results:
                    if item.applied and item.version is not None:
                        acked.writes.append(("put", item.key, item.version))
                        versions[item.key] = item.version
                    else:
                        acked.uncertain.add(item.key)
            elif roll < 0.3:
                ttl_key = f"w/ttl/{keys[0]}/{n}"
                await client.put(ttl_key, "short", ttl=1.0)
                acked.ttl_keys.append(ttl_key)
            else:
                v = await client.put(key, f"v{n}")
                acked.writes.append(("put", key, v))
                versions[key] = v
        except errors.PreconditionFailed:
            versions.pop(key, None)  # an earlier uncertain write moved it
        except errors.KvError as exc:
            log.info("write on %s failed (%s); treated as uncertain", key, exc.code)
            acked.uncertain.add(key)
            versions.pop(key, None)
            await asyncio.sleep(0.1)


async def consume(watcher: Any, out: list[WatchEvent]) -> None:
    async for event in watcher:
        out.append(event)


async def wait_count(events: list[WatchEvent], count: int, *, timeout: float, what: str) -> None:
    async def enough() -> bool:
        return len(events) >= count

    await eventually(enough, timeout=timeout, what=f"{what} ({len(events)} of {count} events)")


def check_exactly_once_in_order(events: list[WatchEvent], acked: Acked) -> dict[str, int]:
    positions = [(e.partition, e.rev, e.version, e.key) for e in events]
    assert len(positions) == len(set(positions)), "a change was delivered twice"
    by_key: dict[str, list[WatchEvent]] = defaultdict(list)
    for e in events:
        by_key[e.key].append(e)
    for key, evs in by_key.items():
        versions = [e.version for e in evs]
        assert versions == sorted(set(versions)), f"{key}: out of order or repeated {versions}"
    seen = {(e.kind, e.key, e.version if e.kind == "put" else e.prev_version) for e in events}
    missing = [w for w in acked.writes if w not in seen]
    assert not missing, f"{len(missing)} acknowledged changes never seen, e.g. {missing[:5]}"
    # acked changes of a key appear in the order they were acknowledged
    for key in KEYS:
        mine = [(k, v) for k, kk, v in acked.writes if kk == key]
        stream = [(e.kind, e.version if e.kind == "put" else e.prev_version) for e in by_key[key]]
        it = iter(stream)
        assert all(w in it for w in mine), f"{key}: acked order differs from the stream"
    expired = {e.key for e in events if e.kind == "expire"}
    return {"events": len(events), "acked": len(acked.writes), "expired": len(expired)}


async def test_every_change_once_in_order_across_leader_kill_and_scale(make_cluster) -> None:
    h = make_cluster(nodes=3, partitions=8)
    info = await h.wait_ready()
    c = h.cluster
    victim = str(info["leaders"]["0"])
    victim_url = c.pmap.node(victim).http_url
    urls = [victim_url] + [u for u in c.endpoints if u != victim_url]
    acked, stop = Acked(), asyncio.Event()
    events: list[WatchEvent] = []
    async with Client(urls) as wclient, Client(c.endpoints) as client:
        watcher = wclient.watch("w/")
        watch_task = asyncio.create_task(consume(watcher, events))
        await eventually(_ready(watcher), timeout=30, what="watch started")
        assert watcher.source == victim_url
        writers = [asyncio.create_task(writer(client, KEYS[i::4], acked, stop)) for i in range(4)]
        try:
            await wait_count(events, 100, timeout=60, what="before the kill")
            c.kill_node(victim)  # leader of partition 0 and the node serving the watch
            log.info("killed %s with %d events seen", victim, len(events))
            await wait_count(events, len(events) + 100, timeout=90, what="after the kill")
            c.start_node(victim)
            await h.wait_ready(timeout=90)
            await wait_count(events, len(events) + 50, timeout=60, what="after the restart")
            mid = len(events)
            mid_token = watcher.token
            up = await scale_cluster(c, 5, options=FAST)
            assert up["status"] == "done"
            assert len(c.pmap.nodes) == 5
            await wait_count(events, len(events) + 100, timeout=90, what="after the scale")
        finally:
            stop.set()
            await asyncio.gather(*writers)
        acked_puts = {(k, v) for kind, k, v in acked.writes if kind == "put"}

        async def all_seen() -> bool:
            seen = {(e.key, e.version) for e in events if e.kind == "put"}
            expired = {e.key for e in events if e.kind == "expire"}
            return acked_puts <= seen and set(acked.ttl_keys) <= expired

        await eventually(all_seen, timeout=60, what="every acknowledged change delivered")
        watch_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch_task
    stats = check_exactly_once_in_order(events, acked)
    log.info("watch across kill and scale: %s, reconnects %d", stats, watcher.reconnects)
    assert watcher.reconnects >= 1
    assert stats["expired"] == len(set(acked.ttl_keys)) > 0
    # A new watcher resuming from a mid-stream token gets exactly the rest, per partition.
    await check_resume(c.endpoints, mid_token, events[mid:])


def _ready(watcher: Any) -> Any:
    async def ready() -> bool:
        return watcher.token is not None

    return ready


async def check_resume(endpoints: list[str], token: str | None, rest: list[WatchEvent]) -> None:
    assert token is not None
    got: list[WatchEvent] = []
    async with Client(list(reversed(endpoints))) as client:
        task = asyncio.create_task(consume(client.watch("w/", from_token=token), got))
        try:
            await wait_count(got, len(rest), timeout=60, what="resumed watch")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def per_partition(evs: list[WatchEvent]) -> dict[int, list[tuple[str, int, str]]]:
        out: dict[int, list[tuple[str, int, str]]] = defaultdict(list)
        for e in evs:
            out[e.partition].append((e.key, e.version, e.kind))
        return out

    assert per_partition(got[: len(rest)]) == per_partition(rest)


# ----------------------------------------------------------------------------- compaction, stuck

SMALL = {
    "KVNODE_WATCH_HISTORY_ENTRIES": "200",
    "KVNODE_WATCH_HISTORY_BYTES": str(2 * 1024 * 1024),
    "KVNODE_WATCH_BUFFER_BYTES": str(256 * 1024),
    "KVNODE_WATCH_STALL_S": "3",
}


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


async def test_compacted_position_is_410_and_a_stuck_watcher_is_cut_off(make_cluster) -> None:
    h = make_cluster(nodes=3, partitions=4, env=SMALL)
    await h.wait_ready()
    c = h.cluster
    url = c.endpoints[0]
    async with Client(c.endpoints) as client, aiohttp.ClientSession() as s:
        for i in range(1200):  # 300 entries per partition: more than the 200 kept
            await client.put(f"c/{i % 10}", str(i))
        async with s.get(url + "/v1/watch", params={"from_version": "1"}) as r:
            assert r.status == 410
            body = await r.json()
        assert body["code"] == "compacted"
        assert "older than the change history" in body["message"]
        cli = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-c", "from kvnode.cli import main; main()",
             "--endpoints", url, "watch", "c/", "--from", "1"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert cli.returncode == 1, cli.stderr
        assert json.loads(cli.stderr)["code"] == "compacted"
        # ... and from a token taken now it prints the changes that follow, one JSON line each
        async with s.get(url + "/v1/watch", params={"duration_s": "0.1"}) as r:
            token = (await r.text()).split("id: ", 1)[1].split("\n", 1)[0]
        for i in range(3):
            await client.put(f"c/cli{i}", str(i))
        cli = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-c", "from kvnode.cli import main; main()",
             "--endpoints", url, "watch", "c/", "--from", token, "--count", "3"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert cli.returncode == 0, cli.stderr
        lines = [json.loads(line) for line in cli.stdout.splitlines()]
        assert sorted(x["key"] for x in lines) == ["c/cli0", "c/cli1", "c/cli2"]
        assert all(x["kind"] == "put" and x["token"].startswith("w1.4.") for x in lines)

        pid, quiet_pid = c.pid("node-0"), c.pid("node-1")
        assert pid is not None
        assert quiet_pid is not None
        before, quiet_before = rss_kib(pid), rss_kib(quiet_pid)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(10)
        host, port = url.removeprefix("http://").rsplit(":", 1)
        await asyncio.to_thread(sock.connect, (host, int(port)))
        sock.sendall(f"GET /v1/watch?prefix=s/ HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        head = await asyncio.to_thread(sock.recv, 200)
        assert head.startswith(b"HTTP/1.1 200"), head
        value = "x" * 64 * 1024
        buffered: list[float] = []
        cut = 0.0
        for i in range(0, 800, 8):  # 50 MB through a watcher that never reads
            await asyncio.gather(*(client.put(f"s/{i + j}", value) for j in range(8)))
            buffered.append(await metric(s, url, "ringkv_watch_buffered_bytes"))
            cut = await metric(s, url, "ringkv_watch_cutoffs_total")
            if cut and i >= 400:
                break
        await eventually(_cut(s, url), timeout=30, what="stuck watcher cut off")
        after, quiet_after = rss_kib(pid), rss_kib(quiet_pid)
        growth, quiet_growth = (after - before) // 1024, (quiet_after - quiet_before) // 1024
        log.info(
            "stuck watcher: node-0 RSS %d -> %d MiB (+%d), node-1 without watcher +%d MiB, "
            "max buffered %.0f KiB",
            before // 1024, after // 1024, growth, quiet_growth, max(buffered) / 1024,
        )  # fmt: skip
        print(f"RSS growth serving a stuck watcher: {growth} MiB (node without: {quiet_growth})")
        # the documented bound: the buffer plus one change per partition
        assert max(buffered) <= 256 * 1024 + 4 * (len(value) + 100)
        assert growth <= quiet_growth + 48, (growth, quiet_growth)
        assert await metric(s, url, "ringkv_watch_active") == 0
        closed = await asyncio.to_thread(_drained_to_eof, sock)
        assert closed, "the server did not close the stuck watcher's connection"
        sock.close()


def _cut(s: aiohttp.ClientSession, url: str) -> Any:
    async def cut() -> bool:
        return await metric(s, url, "ringkv_watch_cutoffs_total") >= 1

    return cut


def _drained_to_eof(sock: socket.socket) -> bool:
    """Read whatever is left; True once the server closed the connection (EOF or reset)."""
    try:
        while sock.recv(1 << 20):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True
