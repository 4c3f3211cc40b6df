"""A node whose volume was lost never rejoins its groups as a voter (real processes).

Node 2's data directory is wiped while it is stopped, after the cluster moved past its epoch-1
bootstrap map. Restarted, it opens none of its old replicas, reports every one as needing a
reseed (``/readyz``, ``GET /v1/admin/partitions/{p}``, metric), and the other replicas' groups
keep their members and every committed write. The repair is the executor's path through the
admin API: remove the old voter, seed a fresh replica (join), add it, catch up; then the
digests of all three replicas are equal and the node is ready again.
"""

from __future__ import annotations

import shutil
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from kvnode.core.model import NodeInfo, PartitionMap
from kvnode.rebalance.http_admin import HttpNodeAdmin

from tests.support.clusters import eventually, partition_leader
from tests.support.clusters import on_leader as on_partition_leader

pytestmark = pytest.mark.integration

PARTITIONS = 3
KEYS = 150


async def get(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s, s.get(url, timeout=aiohttp.ClientTimeout(5)) as r:
        body = await (r.json() if r.content_type == "application/json" else r.text())
        return r.status, body


async def test_wiped_volume_is_refused_then_repaired(make_cluster) -> None:
    h = make_cluster(nodes=3, partitions=PARTITIONS, replication=3)
    await h.wait_ready(timeout=60)
    c = h.cluster
    # The cluster moves past its bootstrap map, as `ringkv local up` does once it serves.
    assert await c.seal_bootstrap()
    assert not await c.seal_bootstrap()  # once
    epoch2 = c.pmap
    assert epoch2.epoch == 2
    admin = HttpNodeAdmin(timeout_s=15)
    try:
        async with h.client() as client:
            for i in range(KEYS):
                await client.put(f"k{i}", f"v{i}")
        lost = epoch2.nodes[2]
        c.stop_node(lost.node_id)
        shutil.rmtree(c.data_dir(lost.node_id))
        c.start_node(lost.node_id)

        async def refused() -> Any:
            try:
                status, body = await get(lost.http_url + "/readyz")
            except aiohttp.ClientError:  # not listening yet
                return None
            return body if status == 503 and body.get("needs_reseed") else None

        ready = await eventually(refused, timeout=30, what="needs-reseed on the wiped node")
        assert ready["needs_reseed"] == list(range(PARTITIONS))
        assert "reseed" in ready["reason"]
        for p in range(PARTITIONS):
            st = (await get(f"{lost.http_url}/v1/admin/partitions/{p}"))[1]
            assert st == {"partition": p, "hosted": False, "needs_reseed": True}
            assert (await admin.replica_state(lost, p)).needs_reseed
        metrics = (await get(lost.http_url + "/metrics"))[1]
        assert (
            f'ringkv_partition_needs_reseed{{node="{lost.node_id}",partition="0"}} 1.0' in metrics
        )
        # The others' groups are untouched: still three members, every write readable, and
        # writes go on with two of three voters.
        survivors = [n for n in epoch2.nodes if n.node_id != lost.node_id]
        for p in range(PARTITIONS):
            st = await admin.replica_state(survivors[0], p)
            assert lost.node_id in st.members
        async with h.client() as client:
            for i in range(KEYS):
                assert (await client.get(f"k{i}")).value == f"v{i}"
            for i in range(KEYS, KEYS + 30):
                await client.put(f"k{i}", f"v{i}")

        for p in range(PARTITIONS):
            # Partition 0: the node is killed -9 between the seed and the add, and restarts.
            crash = (lambda: restart(h, lost.node_id)) if p == 0 else None
            await repair(admin, epoch2, p, lost.node_id, after_join=crash)

        await h.wait_ready(timeout=60)
        status, body = await get(lost.http_url + "/readyz")
        assert status == 200, body
        assert body["needs_reseed"] == []
        async with h.client() as client:
            for i in range(KEYS + 30):
                assert (await client.get(f"k{i}")).value == f"v{i}"
    finally:
        await admin.close()


async def restart(h: Any, node_id: str) -> None:
    """kill -9 and start again; wait until its HTTP API answers."""
    h.cluster.kill_node(node_id)
    h.cluster.start_node(node_id)
    url = h.cluster.pmap.node(node_id).http_url

    async def answers() -> bool:
        try:
            return (await get(url + "/readyz"))[0] in (200, 503)
        except aiohttp.ClientError:
            return False

    await eventually(answers, timeout=30, what=f"{node_id} answering after kill -9")


async def repair(
    admin: HttpNodeAdmin,
    pmap: PartitionMap,
    p: int,
    node_id: str,
    *,
    after_join: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Remove the old voter, seed and add a fresh one, wait for catch-up, compare digests."""

    async def leader_id() -> str | None:
        return await partition_leader(admin, pmap, p, besides=node_id)

    async def on_leader(call: Callable[[NodeInfo], Awaitable[Any]], what: str) -> Any:
        return await on_partition_leader(admin, pmap, p, call, what, besides=node_id)

    await on_leader(lambda leader: admin.remove_member(leader, p, node_id), "remove")
    lid = await eventually(leader_id, timeout=30, what=f"a leader of {p} other than {node_id}")
    seed = await admin.join(pmap.node(node_id), p, source=lid)
    assert not seed.already_hosted
    if after_join is not None:
        await after_join()
        st = await admin.replica_state(pmap.node(node_id), p)
        assert st.hosted  # the seeded replica came back from its own disk
        assert not st.needs_reseed
    await on_leader(lambda leader: admin.add_member(leader, p, node_id), "add")
    commit = (await on_leader(lambda leader: admin.replica_state(leader, p), "state")).commit_index

    async def caught_up() -> bool:
        st = await admin.replica_state(pmap.node(node_id), p)
        return st.hosted and st.last_applied >= commit and st.leader_id is not None

    await eventually(caught_up, timeout=30, what=f"catch-up of {p}")

    async def on_any_leader(call: Callable[[NodeInfo], Awaitable[Any]], what: str) -> Any:
        # Caught up, the new voter is a member like the others: housekeeping may hand it the
        # leadership at any moment (it is the preferred replica of some partitions).
        return await on_partition_leader(admin, pmap, p, call, what)

    index = await on_any_leader(lambda leader: admin.start_digest(leader, p), "digest")

    async def digests() -> list[str] | None:
        got = [await admin.digest(n, p, index) for n in pmap.nodes]
        return got if all(got) else None

    got = await eventually(digests, timeout=30, what=f"digests of {p}")
    assert len(set(got)) == 1, got
    members = (await on_any_leader(lambda leader: admin.replica_state(leader, p), "state")).members
    assert sorted(members) == sorted(n.node_id for n in pmap.nodes)
