"""The node admin API on real processes: move one partition replica to a new node by hand
(seed, add, catch up, verify, remove, drop) while the data stays readable."""

from __future__ import annotations

import os

import pytest
from kvnode.core import errors
from kvnode.core.model import PartitionMap
from kvnode.rebalance.http_admin import HttpNodeAdmin

from tests.support.clusters import eventually

pytestmark = pytest.mark.integration


async def test_move_one_replica_by_hand(make_cluster):
    h = make_cluster(nodes=3, partitions=2, reserve_nodes=4)
    await h.wait_ready()
    c = h.cluster
    async with h.client() as client:
        for i in range(200):
            await client.put(f"k{i}", f"v{i}")
    new = c.new_node(3)
    base = c.pmap
    announce = PartitionMap.build(
        epoch=base.epoch + 1,
        nodes=[*base.nodes, new],
        replicas=base.replicas,
        replication=base.replication,
    )
    c.set_map(announce)
    c.start_node(new.node_id)
    admin = HttpNodeAdmin(timeout_s=10)
    try:

        async def install(pmap, n):
            await admin.install_map(n, pmap)
            return True

        for n in announce.nodes:
            await eventually(
                lambda n=n: install(announce, n), timeout=30, what=f"map on {n.node_id}"
            )
        p = 0
        states = {n.node_id: await admin.replica_state(n, p) for n in base.nodes}
        leader_id = next(s.leader_id for s in states.values() if s.leader_id)
        leader = announce.node(leader_id)
        seed = await admin.join(new, p, source=leader_id)
        assert not seed.already_hosted
        assert seed.bytes > 0
        again = await admin.join(new, p, source=leader_id)
        assert again.already_hosted
        await admin.add_member(leader, p, new.node_id)
        async with h.client() as client:  # writes after the seed reach the joiner through raft
            for i in range(200, 260):
                await client.put(f"k{i}", f"v{i}")
        commit = (await admin.replica_state(leader, p)).commit_index

        async def caught_up():
            st = await admin.replica_state(new, p)
            return st.last_applied >= commit and st.leader_id is not None

        await eventually(caught_up, timeout=30, what="catch-up")
        index = await admin.start_digest(leader, p)

        async def digests():
            a = await admin.digest(leader, p, index)
            b = await admin.digest(new, p, index)
            return (a, b) if a and b else None

        a, b = await eventually(digests, timeout=30, what="digests")
        assert a == b
        old = next(nid for nid in ("node-0", "node-1", "node-2") if nid != leader_id)
        await admin.remove_member(leader, p, old)

        async def membership():
            members = (await admin.replica_state(leader, p)).members
            return old not in members and new.node_id in members

        await eventually(membership, timeout=5, what="membership without the old member")
        with pytest.raises(errors.PreconditionFailed):
            await admin.drop(announce.node(old), p)  # the installed map still lists it
        replicas = [list(r) for r in base.replicas]
        replicas[p] = [m for m in replicas[p] if m != old] + [new.node_id]
        after = PartitionMap.build(
            epoch=announce.epoch + 1,
            nodes=announce.nodes,
            replicas=replicas,
            replication=base.replication,
        )
        for n in after.nodes:
            await admin.install_map(n, after)
        c.set_map(after)
        assert await admin.drop(after.node(old), p)
        assert not await admin.drop(after.node(old), p)
        assert not (await admin.replica_state(after.node(old), p)).hosted
        assert not os.listdir(c.node(old).data_dir).count(f"p{p:05d}")
        async with h.client() as client:
            for i in range(260):
                got = await client.get(f"k{i}")
                assert got is not None, i
                assert got.value == f"v{i}", i
            for i in range(260):
                got = await client.get(f"k{i}", consistency="eventual")
                assert got is not None, i
                assert got.value == f"v{i}", i
        # The joiner survives a kill -9 and comes back as a member from its own disk.
        c.kill_node(new.node_id)
        c.start_node(new.node_id)
        await h.wait_ready(timeout=60)
        st = await eventually(
            lambda: admin.replica_state(new, p), timeout=30, what="joiner state after restart"
        )
        assert st.hosted
    finally:
        await admin.close()
