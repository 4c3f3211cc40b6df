"""Reads and writes through every node of a real 3-node cluster."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from kvnode.client import Client
from kvnode.core import errors

from tests.support.metrics import metric

pytestmark = pytest.mark.integration


async def test_write_through_each_node_read_through_every_node(cluster) -> None:
    keys = {}
    for i, ep in enumerate(cluster.endpoints):
        async with Client([ep], direct=False) as c:
            for j in range(20):
                key = f"user/{i}/{j}"
                keys[key] = await c.put(key, f"value-{i}-{j}")
    for ep in cluster.endpoints:
        async with Client([ep], direct=False) as c:
            for key, version in keys.items():
                entry = await c.get(key)
                assert entry is not None, f"{key} missing via {ep}"
                assert entry.value == f"value-{key.split('/')[1]}-{key.split('/')[2]}"
                assert entry.version == version
                eventual = await c.get(key, consistency="eventual")
                assert eventual is not None
    # Every node hosts every partition (3 nodes, RF 3): the strong reads a node got for keys it
    # does not lead were served by the node itself, as follower reads, not forwarded.
    async with aiohttp.ClientSession() as s:
        served = [
            await metric(s, ep, "ringkv_follower_reads_total", outcome="served")
            for ep in cluster.endpoints
        ]
    assert sum(served) >= len(keys), served  # each key was read through >= 1 follower
    async with cluster.client() as c:
        page = await c.keys("user/1/", limit=100)
        assert [e.key for e in page.items] == sorted(k for k in keys if k.startswith("user/1/"))


async def test_smart_client_goes_direct_and_lists_with_cursor(cluster) -> None:
    async with cluster.client() as c:
        await asyncio.gather(*(c.put(f"scan/{n:03d}", str(n)) for n in range(57)))
        seen = [e.key async for e in c.scan("scan/")]
        assert seen == [f"scan/{n:03d}" for n in range(57)]
        page = await c.keys("scan/", limit=10)
        assert len(page.items) == 10
        assert page.next_cursor == "scan/009"
        rest = await c.keys("scan/", limit=100, cursor=page.next_cursor)
        assert rest.items[0].key == "scan/010"
        assert rest.next_cursor is None


async def test_delete_and_conditional_delete(cluster) -> None:
    async with cluster.client() as c:
        v = await c.put("d/1", "a")
        with pytest.raises(errors.PreconditionFailed):
            await c.delete("d/1", if_version=v + 1000)
        assert await c.delete("d/1", if_version=v) is True
        assert await c.get("d/1") is None
        assert await c.delete("d/1") is False


async def test_stale_epoch_is_answered_with_the_current_map(cluster) -> None:
    async with cluster.client() as c:
        info = await c.cluster()
    from kvnode.client import NodeHttp

    http = NodeHttp()
    try:
        with pytest.raises(errors.StaleEpoch) as exc:
            await http.call(
                cluster.endpoints[0],
                "GET",
                "/v1/kv/anything",
                headers={"X-Ringkv-Epoch": str(info["epoch"] - 1)},
                timeout=5,
            )
        assert exc.value.details["map"]["epoch"] == info["epoch"]
    finally:
        await http.close()


async def test_nodes_without_a_replica_forward_reads_writes_and_listing(make_cluster) -> None:
    handle = make_cluster(nodes=4, partitions=8, replication=3)
    info = await handle.wait_ready(timeout=60)
    pmap = handle.cluster.pmap
    assert any(len(pmap.partitions_of(n)) < pmap.partitions for n in handle.cluster.node_ids)
    expected = {}
    for i, ep in enumerate(handle.endpoints):
        async with Client([ep], direct=False) as c:
            for j in range(16):
                key = f"fwd/{i}/{j}"
                await c.put(key, f"{i}-{j}")
                expected[key] = f"{i}-{j}"
    for ep in handle.endpoints:
        async with Client([ep], direct=False) as c:
            for key, value in expected.items():
                assert (await c.get(key)).value == value
                assert (await c.get(key, consistency="eventual")).value == value
            listed = [e.key async for e in c.scan("fwd/")]
            assert listed == sorted(expected)
    # a smart client asking a non-replica not to forward learns who owns the partition
    async with Client(handle.endpoints) as smart:
        for key, value in expected.items():
            assert (await smart.get(key)).value == value
    assert info["epoch"] == 1
