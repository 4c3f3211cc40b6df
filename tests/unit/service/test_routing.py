"""NodeService's routing decisions against fake Raft groups: where a request runs, when it is
forwarded, when it waits for a leader, and which failures are never retried."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

import pytest
from kvnode.core import errors
from kvnode.core.model import Record
from kvnode.core.ops import Consistency, Put, RequestContext
from kvnode.service import waiting
from kvnode.service.node import NodeService
from kvnode.settings import NodeSettings

from tests.unit.service.fakes import (
    FakeForwarder,
    FakeGroups,
    addr,
    fail,
    ok_write,
    three_nodes,
)

pytestmark = pytest.mark.timeout(20)
PLAIN = RequestContext(timeout_s=2.0)


async def service_with(
    tmp_path: Path, groups: FakeGroups, fwd: FakeForwarder, *, partitions: int = 2
) -> NodeService:
    settings = NodeSettings(node_id=groups.me, data_dir=str(tmp_path))
    svc = NodeService(settings=settings, groups=groups, forwarder=fwd)  # type: ignore[arg-type]
    await svc.install_map(three_nodes(partitions=partitions))
    return svc


def key_in(svc: NodeService, partition: int) -> str:
    from kvnode.core import hashing

    assert svc.pmap is not None
    return next(
        k
        for k in (f"k{i}" for i in range(1000))
        if hashing.partition_of(k, svc.pmap.partitions) == partition
    )


async def test_a_write_waits_for_a_leader_to_appear_then_forwards(tmp_path: Path) -> None:
    groups = FakeGroups("n0", leaders={0: None})
    fwd = FakeForwarder(ok_write("x"))
    svc = await service_with(tmp_path, groups, fwd)
    key = key_in(svc, 0)
    asyncio.get_running_loop().call_later(0.3, groups.leaders.__setitem__, 0, addr("n1", 0))
    started = time.monotonic()
    result = await svc.write(Put(key, "v"), ctx=PLAIN)
    assert result.version == 9
    assert time.monotonic() - started >= 0.3
    assert fwd.calls == [("batch", "n1")]


async def test_no_leader_until_the_deadline_is_a_503_with_retry_after(tmp_path: Path) -> None:
    groups = FakeGroups("n0", leaders={0: None})
    svc = await service_with(tmp_path, groups, FakeForwarder())
    started = time.monotonic()
    with pytest.raises(errors.Unavailable, match="no reachable leader within") as exc:
        await svc.write(Put(key_in(svc, 0), "v"), ctx=RequestContext(timeout_s=0.6))
    took = time.monotonic() - started
    assert 0.4 <= took <= 0.8, took
    assert exc.value.details["retry_after"] == 1


async def test_a_write_that_may_have_applied_is_never_retried(tmp_path: Path) -> None:
    groups = FakeGroups("n0", leaders={0: addr("n1", 0)})
    fwd = FakeForwarder(fail(errors.UnknownOutcome("forward timed out")), ok_write("x"))
    svc = await service_with(tmp_path, groups, fwd)
    with pytest.raises(errors.UnknownOutcome):
        await svc.write(Put(key_in(svc, 0), "v"), ctx=PLAIN)
    assert fwd.calls == [("batch", "n1")]


@pytest.mark.parametrize(
    "refusal",
    [
        errors.Unavailable("cannot connect", reason="connect"),
        errors.NotLeader("not the leader", leader=None),
        errors.NotOwner("moved away"),
        errors.StaleEpoch("old map"),
    ],
)
async def test_a_forward_that_certainly_did_not_apply_is_routed_again(
    tmp_path: Path, refusal: errors.KvError
) -> None:
    groups = FakeGroups("n0", leaders={0: addr("n1", 0)})

    def refuse_and_move(node: object) -> object:
        groups.leaders[0] = addr("n2", 0)  # the election the refusal was about
        raise refusal

    fwd = FakeForwarder(refuse_and_move, ok_write("x"))
    svc = await service_with(tmp_path, groups, fwd)
    await svc.write(Put(key_in(svc, 0), "v"), ctx=PLAIN)
    assert fwd.calls == [("batch", "n1"), ("batch", "n2")]


async def test_a_local_proposal_that_was_discarded_is_proposed_again(tmp_path: Path) -> None:
    groups = FakeGroups("n0", leaders={0: addr("n0", 0)})
    groups.propose_errors.append(errors.Unavailable("discarded by a leader change"))
    svc = await service_with(tmp_path, groups, FakeForwarder())
    result = await svc.write(Put(key_in(svc, 0), "v"), ctx=PLAIN)
    assert result.version == 7
    assert len(groups.proposals) == 2


async def test_an_unconfirmed_local_proposal_is_not_proposed_again(tmp_path: Path) -> None:
    groups = FakeGroups("n0", leaders={0: addr("n0", 0)})
    groups.propose_errors.append(errors.UnknownOutcome("not confirmed"))
    svc = await service_with(tmp_path, groups, FakeForwarder())
    with pytest.raises(errors.UnknownOutcome):
        await svc.write(Put(key_in(svc, 0), "v"), ctx=PLAIN)
    assert len(groups.proposals) == 1


async def test_backpressure_is_passed_through(tmp_path: Path) -> None:
    groups = FakeGroups("n0", leaders={0: addr("n1", 0)})
    fwd = FakeForwarder(fail(errors.Overloaded("busy", retry_after=1)))
    svc = await service_with(tmp_path, groups, fwd)
    with pytest.raises(errors.Overloaded):
        await svc.write(Put(key_in(svc, 0), "v"), ctx=PLAIN)
    assert len(fwd.calls) == 1


@pytest.mark.parametrize(
    ("ctx", "expected"),
    [
        (RequestContext(forward=False, timeout_s=2.0), errors.NotLeader),  # smart client
        (RequestContext(hops=1, timeout_s=2.0), errors.Unavailable),  # forwarded to us
    ],
)
async def test_only_the_entry_node_of_a_plain_request_waits(
    tmp_path: Path, ctx: RequestContext, expected: type[errors.KvError]
) -> None:
    groups = FakeGroups("n0", leaders={0: None})
    svc = await service_with(tmp_path, groups, FakeForwarder())
    started = time.monotonic()
    with pytest.raises(expected):
        await svc.write(Put(key_in(svc, 0), "v"), ctx=ctx)
    assert time.monotonic() - started < 0.2  # answered at once: the caller decides


async def test_a_partition_not_hosted_here_asks_its_replicas_in_turn(tmp_path: Path) -> None:
    groups = FakeGroups("n0")
    fwd = FakeForwarder(
        fail(errors.Unavailable("cannot connect", reason="connect")),
        fail(errors.Unavailable("no leader")),
        ok_write("x"),
    )
    svc = await service_with(tmp_path, groups, fwd)
    groups.opened.clear()  # this node hosts nothing: it only knows the map
    await svc.write(Put(key_in(svc, 1), "v"), ctx=PLAIN)
    pmap = svc.pmap
    assert pmap is not None
    assert [n for _, n in fwd.calls] == list(pmap.replicas[1])


async def test_reads_strong_on_the_leader_eventual_on_listed_replicas(tmp_path: Path) -> None:
    groups = FakeGroups("n0", leaders={0: addr("n0", 0), 1: addr("n1", 1)})
    rec = Record(value="v", version=3, expires_at_ms=None)
    fwd = FakeForwarder(lambda node: rec)
    svc = await service_with(tmp_path, groups, fwd)
    k0, k1 = key_in(svc, 0), key_in(svc, 1)
    groups.store(0).rows[k0] = rec
    groups.store(1).rows[k1] = rec
    assert await svc.get(k0, consistency=Consistency.STRONG, ctx=PLAIN) == rec
    assert groups.barriers == [0]  # the leader passed a read barrier first
    assert await svc.get(k1, consistency=Consistency.EVENTUAL, ctx=PLAIN) == rec
    assert fwd.calls == []  # a listed follower serves eventual reads itself
    assert await svc.get(k1, consistency=Consistency.STRONG, ctx=PLAIN) == rec
    assert groups.follower_reads == [1]  # the follower asked for a read index: declined
    assert fwd.calls == [("get", "n1")]  # so the strong read went to the leader


async def test_a_follower_serves_a_strong_read_its_leader_confirmed(tmp_path: Path) -> None:
    groups = FakeGroups("n0", leaders={1: addr("n1", 1)}, follower_confirms=[True])
    fwd = FakeForwarder()
    svc = await service_with(tmp_path, groups, fwd)
    k1 = key_in(svc, 1)
    groups.store(1).rows[k1] = Record(value="mine", version=4, expires_at_ms=None)
    got = await svc.get(k1, consistency=Consistency.STRONG, ctx=PLAIN)
    assert got.value == "mine"
    assert groups.follower_reads == [1]
    assert fwd.calls == []  # served here, not forwarded
    assert groups.barriers == []


async def test_a_replica_the_map_does_not_list_never_serves_a_strong_read(
    tmp_path: Path,
) -> None:
    groups = FakeGroups("n0", leaders={1: addr("n1", 1)}, follower_confirms=[True])
    rec = Record(value="v", version=3, expires_at_ms=None)
    fwd = FakeForwarder(lambda node: rec)
    svc = await service_with(tmp_path, groups, fwd)
    pmap = svc.pmap
    assert pmap is not None
    k1 = key_in(svc, 1)
    # a replica still hosted here but no longer (or not yet) in the map of partition 1
    smaller = dataclasses.replace(
        pmap,
        epoch=pmap.epoch + 1,
        replicas=tuple(
            tuple(n for n in r if n != "n0") if p == 1 else r for p, r in enumerate(pmap.replicas)
        ),
    )
    await svc.install_map(smaller)
    assert await svc.get(k1, consistency=Consistency.STRONG, ctx=PLAIN) == rec
    assert groups.follower_reads == []
    assert fwd.calls == [("get", "n1")]


def test_a_read_attempt_gives_up_early_a_write_never() -> None:
    assert waiting.attempt_deadline(100.0, 110.0, idempotent=False) == 110.0
    assert waiting.attempt_deadline(100.0, 110.0, idempotent=True) == 105.0
    assert waiting.attempt_deadline(100.0, 102.0, idempotent=True) == 101.5
    assert waiting.attempt_deadline(100.0, 101.0, idempotent=True) == 101.0
