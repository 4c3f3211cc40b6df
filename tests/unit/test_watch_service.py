"""``WatchService`` and ``Watch`` over real ``ChangeHistory`` objects (the node hosts every
partition, so no HTTP is involved; reading other nodes is covered by
tests/integration/test_watch.py): start positions, order, tokens, compaction, the buffer bound
and the end of a stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import prometheus_client
import pytest
from kvnode.client import NodeHttp
from kvnode.core import errors
from kvnode.core.model import NodeInfo, PartitionMap
from kvnode.service.watch import WatchLimits, WatchService
from kvnode.watch import cursor
from kvnode.watch.history import ChangeHistory, HistoryLimits
from kvnode.watch.model import Effect, Event, Kind, Position

PARTITIONS = 3


class Histories:
    def __init__(self, limits: HistoryLimits) -> None:
        self.h = {p: ChangeHistory(p, limits=limits, kept_after=0) for p in range(PARTITIONS)}
        self.index = dict.fromkeys(range(PARTITIONS), 0)

    def history(self, partition: int) -> ChangeHistory | None:
        return self.h.get(partition)

    def put(self, p: int, key: str, value: str = "v") -> int:
        self.index[p] += 1
        self.h[p].record(self.index[p], [Effect(Kind.PUT, key, value)], ts_ms=1)
        return self.index[p]


def one_node_map() -> PartitionMap:
    return PartitionMap.build(
        epoch=1,
        nodes=[NodeInfo("n0", "127.0.0.1", 1, 2)],
        replicas=[["n0"]] * PARTITIONS,
        replication=1,
    )


@pytest.fixture
def registry() -> prometheus_client.CollectorRegistry:
    return prometheus_client.CollectorRegistry()


def service(
    hist: Histories, registry: prometheus_client.CollectorRegistry, **limits: float
) -> WatchService:
    pmap = one_node_map()
    return WatchService(
        node_id="n0",
        histories=hist,
        current_map=lambda: pmap,
        http=NodeHttp(),
        limits=WatchLimits(**limits),  # type: ignore[arg-type]
        registry=registry,
    )


async def events(it: AsyncIterator[list[Event]], count: int, timeout: float = 5) -> list[Event]:
    out: list[Event] = []
    async with asyncio.timeout(timeout):
        while len([e for e in out if e.kind == "change"]) < count:
            out += await anext(it)
    return out


async def test_from_now_streams_new_changes_in_order_with_exact_tokens(registry) -> None:
    hist = Histories(HistoryLimits())
    hist.put(0, "a/old")
    svc = service(hist, registry)
    watch = await svc.open(prefix="a/", from_version=None)
    it = watch.batches()
    ready = await anext(it)
    assert [e.kind for e in ready] == ["ready"]
    assert cursor.decode(ready[0].token, PARTITIONS) == {0: Position(1), 1: Position(0),
                                                         2: Position(0)}  # fmt: skip
    for i in range(5):
        hist.put(i % PARTITIONS, f"a/{i}", str(i))
        hist.put(i % PARTITIONS, f"b/{i}")  # other prefix: skipped, position still moves
    got = [e for e in await events(it, 5) if e.kind == "change"]
    assert sorted(e.change.key for e in got if e.change) == [f"a/{i}" for i in range(5)]
    for p in range(PARTITIONS):
        versions = [e.change.version for e in got if e.change and e.change.partition == p]
        assert versions == sorted(versions)
    assert registry.get_sample_value("ringkv_watch_active") == 1
    assert registry.get_sample_value("ringkv_watch_changes_delivered_total") == 5
    # resuming from the token of a delivered change gives exactly the rest
    third = watch.delivered.copy()
    await svc.release(watch)
    assert registry.get_sample_value("ringkv_watch_active") == 0
    resumed = await svc.open(prefix="a/", from_version=cursor.encode(third, PARTITIONS))
    more = resumed.batches()
    await anext(more)
    hist.put(1, "a/new")
    assert [e.change.key for e in await events(more, 1) if e.change] == ["a/new"]
    await svc.release(resumed)


async def test_position_older_than_kept_is_compacted_before_streaming(registry) -> None:
    hist = Histories(HistoryLimits(max_entries=3))
    for i in range(10):
        hist.put(0, f"k{i}")
    svc = service(hist, registry)
    with pytest.raises(errors.Compacted, match="partition 0"):
        await svc.open(prefix="", from_version="1")
    watch = await svc.open(prefix="", from_version="8")  # versions 8..10 are kept
    got = await events(watch.batches(), 3)
    assert [e.change.version for e in got if e.change] == [8, 9, 10]
    await svc.release(watch)


async def test_a_watcher_that_does_not_read_holds_a_bounded_buffer_then_is_cut_off(
    registry,
) -> None:
    hist = Histories(HistoryLimits(max_entries=50))
    svc = service(hist, registry, buffer_bytes=4096)
    watch = await svc.open(prefix="", from_version=None)
    it = watch.batches()
    await anext(it)
    for i in range(40):  # ~1 KiB each: far more than the buffer
        hist.put(0, f"k{i}", "x" * 1000)
        await asyncio.sleep(0)
    await asyncio.sleep(0.2)
    assert watch._bytes <= 4096 + 1100  # the bound plus at most one read's overshoot
    for i in range(40, 200):  # the history moves past what the watcher fetched
        hist.put(0, f"k{i}", "x" * 1000)
        await asyncio.sleep(0)
    seen: list[Event] = []
    async with asyncio.timeout(10):
        async for batch in it:
            seen += batch
    assert seen[-1].kind == "cutoff"
    assert seen[-1].reason == "compacted"
    assert cursor.decode(seen[-1].token, PARTITIONS)[0].index >= 1
    assert registry.get_sample_value("ringkv_watch_cutoffs_total", {"reason": "compacted"}) == 1
    await svc.release(watch)
    assert registry.get_sample_value("ringkv_watch_buffered_bytes") == 0


async def test_duration_ends_the_stream_and_limits_refuse_extra_watchers(registry) -> None:
    hist = Histories(HistoryLimits())
    svc = service(hist, registry, max_watchers=1)
    watch = await svc.open(prefix="", from_version=None, duration_s=0.2)
    with pytest.raises(errors.Overloaded):
        await svc.open(prefix="", from_version=None)
    kinds: list[str] = []
    async with asyncio.timeout(5):
        async for batch in watch.batches():
            kinds += [e.kind for e in batch]
    assert kinds == ["ready", "end"]
    await svc.release(watch)


async def test_bad_from_version_is_invalid_argument(registry) -> None:
    svc = service(Histories(HistoryLimits()), registry)
    with pytest.raises(errors.InvalidArgument):
        await svc.open(prefix="", from_version="w1.99.1")
