"""The node admin API on real processes: move one partition replica to a new node by hand
(seed, add, catch up, verify, remove, drop) while the data stays readable."""

from __future__ import annotations

import os

import pytest
from kvnode.core import errors
from kvnode.core.model import PartitionMap
from kvnode.rebalance.http_admin import HttpNodeAdmin

from tests.support.clusters import eventually, partition_leader
from tests.support.clusters import on_leader as on_partition_leader

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

        async def on_leader(call, what):
            # leader-only calls go to whoever leads now: housekeeping hands the lead to the
            # preferred replica at any moment (seen right after the seed on a busy machine)
            return await on_partition_leader(admin, announce, p, call, what)

        leader_id = await eventually(
            lambda: partition_leader(admin, base, p), timeout=30, what=f"a leader of {p}"
        )
        seed = await admin.join(new, p, source=leader_id)
        assert not seed.already_hosted
        assert seed.bytes > 0
        again = await admin.join(new, p, source=leader_id)
        assert again.already_hosted
        await on_leader(lambda leader: admin.add_member(leader, p, new.node_id), "add")
        async with h.client() as client:  # writes after the seed reach the joiner through raft
            for i in range(200, 260):
                await client.put(f"k{i}", f"v{i}")
        commit = (
            await on_leader(lambda leader: admin.replica_state(leader, p), "state")
        ).commit_index

        async def caught_up():
            st = await admin.replica_state(new, p)
            return st.last_applied >= commit and st.leader_id is not None

        await eventually(caught_up, timeout=30, what="catch-up")
        index = await on_leader(lambda leader: admin.start_digest(leader, p), "digest")
        members = [announce.node(m) for m in (*base.replicas[p], new.node_id)]

        async def digests():
            got = [await admin.digest(n, p, index) for n in members]
            return got if all(got) else None

        got = await eventually(digests, timeout=30, what="digests")
        assert len(set(got)) == 1, got
        # not the preferred replica (housekeeping hands the lead back to it) and not the leader
        now = await eventually(
            lambda: partition_leader(admin, announce, p), timeout=30, what=f"a leader of {p}"
        )
        old = next(nid for nid in base.replicas[p][1:] if nid != now)
        await on_leader(lambda leader: admin.remove_member(leader, p, old), "remove")

        async def membership():
            st = await on_leader(lambda leader: admin.replica_state(leader, p), "state")
            return old not in st.members and new.node_id in st.members

        await eventually(membership, timeout=30, what="membership without the old member")
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
