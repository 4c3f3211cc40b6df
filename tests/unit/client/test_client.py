"""Routing and retries of ``kvnode.client.Client`` against scripted node servers."""

from __future__ import annotations

import socket
import time

import pytest
from kvnode.client import BatchOp, Client, Deletion
from kvnode.core import errors
from kvnode.core.hashing import partition_of

from tests.unit.client.scripted import (
    DROP,
    HANG,
    PARTITIONS,
    Cluster,
    ServerFactory,
    key_in_partition,
    start_cluster,
)


@pytest.fixture
async def cluster(aiohttp_server: ServerFactory) -> Cluster:
    return await start_cluster(aiohttp_server)


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


async def test_writes_go_to_the_leader_with_routing_headers(cluster: Cluster) -> None:
    async with Client([cluster.node("n0").url]) as c:
        version = await c.put("alpha", "1", ttl=1.5, if_version=0)
    assert version == 8
    leader = cluster.leader_of("alpha")
    [req] = leader.data_requests()
    assert (req.method, req.path) == ("PUT", "/v1/kv/alpha")
    assert req.body == {"value": "1", "ttl": 1.5, "if_version": 0}
    assert req.headers["X-Ringkv-Forward"] == "0"
    assert req.headers["X-Ringkv-Epoch"] == "1"
    assert 0 < float(req.headers["X-Ringkv-Timeout"]) <= 5
    assert len(cluster.all_data_requests()) == 1


async def test_keys_are_percent_encoded(cluster: Cluster) -> None:
    async with Client([cluster.node("n0").url]) as c:
        entry = await c.get("a/b c?é")
    assert entry is not None
    [(_, req)] = cluster.all_data_requests()
    assert req.path == "/v1/kv/a%2Fb%20c%3F%C3%A9?consistency=strong"


async def test_get_returns_entry_or_none(cluster: Cluster) -> None:
    leader = cluster.leader_of("k")
    leader.script.append((404, {"code": "not_found", "message": "no"}))
    async with Client([cluster.node("n0").url]) as c:
        assert await c.get("k") is None
        entry = await c.get("k")
    assert entry is not None
    assert (entry.key, entry.value, entry.version, entry.expires_at_ms) == ("k", "v", 7, None)


async def test_eventual_reads_may_go_to_any_replica(cluster: Cluster) -> None:
    async with Client([cluster.node("n0").url]) as c:
        for _ in range(30):
            await c.get("k", consistency="eventual")
    served_by = {node_id for node_id, _ in cluster.all_data_requests()}
    assert len(served_by) > 1
    assert all("consistency=eventual" in s.path for _, s in cluster.all_data_requests())


async def test_not_leader_hint_redirects(cluster: Cluster) -> None:
    key = key_in_partition(0)
    first = cluster.leader_of(key)
    other = next(n for n in cluster.pmap.replicas[0] if n != first.node_id)  # type: ignore[union-attr]
    first.script.append((421, {"code": "not_leader", "message": "no", "leader": other}))
    async with Client([cluster.node("n0").url]) as c:
        assert await c.put(key, "v") == 8
        assert await c.put(key, "w") == 8  # the hint is remembered
    assert len(first.data_requests()) == 1
    assert len(cluster.node(other).data_requests()) == 2


async def test_stale_epoch_adopts_the_map_and_retries(cluster: Cluster) -> None:
    key = key_in_partition(1)
    old_leader = cluster.leader_of(key)
    new_map = cluster.make_map(epoch=2, rotate=1)
    old_leader.script.append(
        (409, {"code": "stale_epoch", "message": "old", "map": new_map.to_dict()})
    )
    async with Client([cluster.node("n0").url]) as c:
        assert await c.delete(key, if_version=3) is True
    first, retry = [s for _, s in cluster.all_data_requests()]
    assert first.headers["X-Ringkv-Epoch"] == "1"
    assert retry.headers["X-Ringkv-Epoch"] == "2"
    assert retry.path == f"/v1/kv/{key}?if_version=3"


async def test_unavailable_then_success_within_deadline(cluster: Cluster) -> None:
    leader = cluster.leader_of("k")
    busy = {"code": "unavailable", "message": "electing", "retry_after": 0.05}
    leader.script.extend([(503, busy), (429, {"code": "overloaded", "message": "x"}), (503, busy)])
    async with Client([cluster.node("n0").url], timeout=5) as c:
        t0 = time.monotonic()
        assert await c.put("k", "v") == 8
    assert time.monotonic() - t0 >= 0.1  # honoured retry_after twice
    assert len(leader.data_requests()) == 4
    cluster_refreshes = sum(
        1 for n in cluster.nodes.values() for s in n.seen if s.path == "/v1/cluster"
    )
    assert cluster_refreshes >= 1 + 3  # initial fetch + one per backoff


async def test_deadline_exceeded_raises_the_last_error(cluster: Cluster) -> None:
    leader = cluster.leader_of("k")
    busy = (503, {"code": "unavailable", "message": "no leader", "retry_after": 0.01})
    leader.script.extend([busy] * 1000)
    async with Client([cluster.node("n0").url], timeout=0.5) as c:
        t0 = time.monotonic()
        with pytest.raises(errors.Unavailable, match="no leader"):
            await c.put("k", "v")
    assert 0.3 <= time.monotonic() - t0 < 1.5
    assert len(leader.data_requests()) >= 3


async def test_retry_after_beyond_deadline_gives_up_at_once(cluster: Cluster) -> None:
    leader = cluster.leader_of("k")
    leader.script.append((503, {"code": "unavailable", "message": "later", "retry_after": 30}))
    async with Client([cluster.node("n0").url], timeout=2) as c:
        t0 = time.monotonic()
        with pytest.raises(errors.Unavailable):
            await c.get("k")
    assert time.monotonic() - t0 < 1


@pytest.mark.parametrize(
    "reply",
    [(504, {"code": "unknown_outcome", "message": "maybe"}), HANG, DROP],
    ids=["504", "timeout", "disconnect"],
)
async def test_unknown_outcome_is_never_retried(cluster: Cluster, reply: object) -> None:
    leader = cluster.leader_of("k")
    leader.script.append(reply)  # type: ignore[arg-type]
    async with Client([cluster.node("n0").url], timeout=0.5) as c:
        with pytest.raises(errors.UnknownOutcome):
            await c.put("k", "v")
    assert len(cluster.all_data_requests()) == 1


async def test_read_timeout_is_retried(cluster: Cluster) -> None:
    leader = cluster.leader_of("k")
    leader.script.append(DROP)
    async with Client([cluster.node("n0").url], timeout=2) as c:
        assert await c.get("k") is not None
    # a closed connection is not "no answer" (a live node closes idle keep-alive ones)
    assert len(leader.data_requests()) == 2


def replicas_of(cluster: Cluster, key: str) -> list[str]:
    assert cluster.pmap is not None
    return list(cluster.pmap.replicas[partition_of(key, PARTITIONS)])


async def test_a_hanging_leader_costs_a_read_one_attempt_not_the_deadline(
    cluster: Cluster,
) -> None:
    leader = cluster.leader_of("k")
    leader.script.append(HANG)  # a paused (SIGSTOP) leader: accepts, never answers
    async with Client([cluster.node("n0").url], timeout=6, attempt_timeout=0.3) as c:
        started = time.monotonic()
        assert await c.get("k") is not None
        took = time.monotonic() - started
    assert took < 1.5, took  # one capped attempt, then another node; not the 6 s deadline
    [hung] = leader.data_requests()
    assert float(hung.headers["X-Ringkv-Timeout"]) <= 0.3
    assert len(cluster.all_data_requests()) == 2


async def test_a_write_whose_attempt_timed_out_is_unknown_and_never_resent(
    cluster: Cluster,
) -> None:
    leader = cluster.leader_of("k")
    leader.script.append(HANG)
    async with Client([cluster.node("n0").url], timeout=6, attempt_timeout=0.3) as c:
        started = time.monotonic()
        with pytest.raises(errors.UnknownOutcome):
            await c.cas("k", "v", if_version=3)
        assert time.monotonic() - started < 1.5
    assert len(cluster.all_data_requests()) == 1  # may have applied: not sent again


async def test_after_a_node_gave_no_answer_the_next_writes_wait_for_a_new_leader(
    cluster: Cluster,
) -> None:
    old = cluster.leader_of("k")
    old.script.append(HANG)
    follower, new = (cluster.node(n) for n in replicas_of(cluster, "k") if n != old.node_id)
    stale = {"code": "not_leader", "message": "no", "leader": old.node_id}
    follower.script.extend([(421, stale), (421, stale)])  # before the election: the old leader
    follower.script.append((421, {"code": "not_leader", "message": "no", "leader": new.node_id}))
    async with Client([cluster.node("n0").url], timeout=6, attempt_timeout=0.3) as c:
        with pytest.raises(errors.UnknownOutcome):
            await c.put("k", "v1")
        assert await c.put("k", "v2") == 8
    assert len(old.data_requests()) == 1  # suspected: not asked again, stale hints or not
    assert len(follower.data_requests()) == 3
    assert [s.body for s in new.data_requests()] == [{"value": "v2"}]


async def test_a_node_that_gave_no_answer_is_asked_again_once_no_longer_suspected(
    cluster: Cluster,
) -> None:
    """A leader that gave no answer once (a pod being recreated under the same name) and is
    leader again: once its suspicion lapses, the hints naming it are followed again within the
    same operation, instead of the other replicas' "not leader" answers until the deadline."""
    leader = cluster.leader_of("k")
    leader.script.append(HANG)
    follower = cluster.node(next(n for n in replicas_of(cluster, "k") if n != leader.node_id))
    hint = {"code": "not_leader", "message": "no", "leader": leader.node_id}
    follower.script.extend([(421, hint)] * 200)
    async with Client([follower.url], timeout=8, attempt_timeout=0.3) as c:
        started = time.monotonic()
        assert await c.get("k") is not None
        took = time.monotonic() - started
    assert len(leader.data_requests()) == 2, [n for n, _ in cluster.all_data_requests()]
    assert took < 5, took  # the suspicion (2 s) and a backoff, not the 8 s deadline


async def test_attempt_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="attempt_timeout"):
        Client(["http://a"], attempt_timeout=0)


async def test_precondition_failed_is_raised_with_details(cluster: Cluster) -> None:
    leader = cluster.leader_of("k")
    body = {"code": "precondition_failed", "message": "no", "current_version": 4}
    leader.script.append((412, body))
    async with Client([cluster.node("n0").url]) as c:
        with pytest.raises(errors.PreconditionFailed) as info:
            await c.cas("k", "v", if_version=3)
    assert info.value.details["current_version"] == 4
    assert len(cluster.all_data_requests()) == 1


async def test_cas_requires_a_condition(cluster: Cluster) -> None:
    async with Client([cluster.node("n0").url]) as c:
        with pytest.raises(errors.InvalidArgument):
            await c.cas("k", "v")


async def test_connect_failure_falls_back_to_another_endpoint(cluster: Cluster) -> None:
    dead = closed_port_url()
    async with Client([dead, cluster.node("n1").url], timeout=3) as c:
        assert await c.put("k", "v") == 8
    async with Client([dead, cluster.node("n1").url], direct=False, timeout=3) as c:
        assert await c.put("k", "v") == 8


async def test_dead_leader_is_avoided(cluster: Cluster) -> None:
    key = key_in_partition(2)
    leader = cluster.leader_of(key)
    assert leader.server is not None
    await leader.server.close()
    async with Client([n.url for n in cluster.nodes.values() if n is not leader], timeout=3) as c:
        assert await c.put(key, "v") == 8
    assert [n for n, _ in cluster.all_data_requests()] != []


async def test_all_endpoints_down_is_unavailable(cluster: Cluster) -> None:
    async with Client([closed_port_url(), closed_port_url()], timeout=0.5) as c:
        with pytest.raises(errors.Unavailable) as info:
            await c.get("k")
    assert info.value.details.get("reason") == "connect"


async def test_direct_false_round_robins_with_forwarding(cluster: Cluster) -> None:
    urls = [n.url for n in cluster.nodes.values()]
    async with Client(urls, direct=False) as c:
        for i in range(6):
            await c.put(f"k{i}", "v")
    served = [node_id for node_id, _ in cluster.all_data_requests()]
    assert sorted(served) == ["n0", "n0", "n1", "n1", "n2", "n2"]
    for _, req in cluster.all_data_requests():
        assert "X-Ringkv-Forward" not in req.headers
        assert "X-Ringkv-Epoch" not in req.headers
    assert all(not any(s.path == "/v1/cluster" for s in n.seen) for n in cluster.nodes.values())


async def test_single_partition_batch_goes_to_its_leader(cluster: Cluster) -> None:
    ops = [BatchOp.put("u:{7}:a", "1", ttl=2), BatchOp.delete("u:{7}:b", if_value="x")]
    async with Client([cluster.node("n0").url]) as c:
        result = await c.batch(ops, atomic=True)
    assert result.applied
    assert [i.key for i in result.results] == ["u:{7}:a", "u:{7}:b"]
    [req] = cluster.leader_of("u:{7}:a").data_requests()
    assert req.body == {
        "ops": [
            {"op": "put", "key": "u:{7}:a", "value": "1", "ttl": 2},
            {"op": "delete", "key": "u:{7}:b", "if_value": "x"},
        ],
        "atomic": True,
    }
    assert req.headers["X-Ringkv-Forward"] == "0"


async def test_multi_partition_batch_goes_to_a_node_that_fans_out(cluster: Cluster) -> None:
    k0, k1 = key_in_partition(0), key_in_partition(1)
    error = {"code": "precondition_failed", "message": "x", "index": 1, "key": k1}
    failed = {"index": 1, "key": k1, "applied": False, "error": error}
    applied = {"index": 0, "key": k0, "applied": True, "version": 3, "existed": True}
    body = {"applied": False, "results": [applied, failed]}
    cluster.node("n0").script.append((200, body))
    async with Client([cluster.node("n0").url]) as c:
        result = await c.batch([BatchOp.put(k0, "a"), BatchOp.put(k1, "b", if_version=1)])
    assert not result.applied
    ok, bad = result.results
    assert (ok.index, ok.applied, ok.version, ok.existed) == (0, True, 3, True)
    assert (bad.index, bad.applied) == (1, False)
    assert isinstance(bad.error, errors.PreconditionFailed)
    assert bad.error.details["index"] == 1
    assert result.to_json() == body  # exactly the HTTP body (the CLI prints this)
    with pytest.raises(errors.PreconditionFailed):
        result.raise_for_error()
    [(node_id, req)] = cluster.all_data_requests()
    assert node_id == "n0"
    assert "X-Ringkv-Forward" not in req.headers


async def test_partially_applied_batch_is_not_retried(cluster: Cluster) -> None:
    k0, k1 = key_in_partition(0), key_in_partition(1)
    body = {
        "applied": False,
        "results": [
            {"index": 0, "key": k0, "applied": True, "version": 3, "existed": False},
            {
                "index": 1,
                "key": k1,
                "applied": False,
                "error": {"code": "unavailable", "message": "x"},
            },
        ],
    }
    cluster.node("n0").script.append((200, body))
    async with Client([cluster.node("n0").url]) as c:
        result = await c.batch([BatchOp.put(k0, "a"), BatchOp.put(k1, "b")])
    assert [i.applied for i in result.results] == [True, False]
    assert isinstance(result.results[1].error, errors.Unavailable)
    assert len(cluster.all_data_requests()) == 1


async def test_batch_error_with_nothing_applied_is_returned_with_the_error(
    cluster: Cluster,
) -> None:
    """A non-retriable batch error (nothing applied) comes back as a BatchResult whose JSON is
    the HTTP body: the error's fields, ``applied: false`` and ``results``."""
    k0 = key_in_partition(0)
    error = {"code": "precondition_failed", "message": "x", "index": 0, "key": k0}
    body = {
        **error,
        "applied": False,
        "results": [{"index": 0, "key": k0, "applied": False, "error": error}],
    }
    cluster.node("n0").script.append((412, body))
    async with Client([cluster.node("n0").url]) as c:
        result = await c.batch([BatchOp.put(k0, "a", if_version=4)])
    assert not result.applied
    assert isinstance(result.error, errors.PreconditionFailed)
    assert result.to_json() == body


async def test_bad_batch_is_raised(cluster: Cluster) -> None:
    cluster.node("n0").script.append(
        (400, {"code": "invalid_argument", "message": "bad", "field": "ops[1].value"})
    )
    async with Client([cluster.node("n0").url]) as c:
        with pytest.raises(errors.InvalidArgument):
            await c.batch([BatchOp.put(key_in_partition(0), "a"), BatchOp.put("zz", "b")])
        with pytest.raises(errors.InvalidArgument):
            await c.batch([])


async def test_keys_and_scan_follow_cursors(cluster: Cluster) -> None:
    def page(keys: list[str], nxt: str | None) -> tuple[int, dict]:
        items = [{"key": k, "value": k.upper(), "version": 1, "expires_at_ms": None} for k in keys]
        return 200, {"items": items, "next_cursor": nxt}

    cluster.node("n0").script.extend([page(["a", "b"], "b"), page(["c"], None)])
    async with Client([cluster.node("n0").url], direct=False) as c:
        got = [e.key async for e in c.scan("", page_size=2)]
    assert got == ["a", "b", "c"]
    paths = [s.path for s in cluster.node("n0").data_requests()]
    assert "cursor=b" in paths[1]
    assert "limit=2" in paths[0]


async def test_cluster_returns_the_view_and_refreshes_the_map(cluster: Cluster) -> None:
    async with Client([cluster.node("n2").url]) as c:
        info = await c.cluster()
    assert info["node_id"] == "n2"
    assert info["map"]["partitions"] == PARTITIONS


async def test_no_map_yet_falls_back_to_forwarding(cluster: Cluster) -> None:
    cluster.cluster_fails.update(cluster.nodes)
    async with Client([cluster.node("n1").url], timeout=2) as c:
        assert await c.put("k", "v") == 8
    [(node_id, req)] = cluster.all_data_requests()
    assert node_id == "n1"
    assert "X-Ringkv-Forward" not in req.headers


def test_partition_helper_agrees_with_core() -> None:
    assert partition_of(key_in_partition(3), PARTITIONS) == 3


async def test_delete_result_is_the_whole_http_answer(cluster: Cluster) -> None:
    key = key_in_partition(0)
    async with Client([cluster.node("n0").url]) as c:
        result = await c.delete_result(key, if_version=7)
    assert result == Deletion(key, True, 7)
    assert result.to_json() == {"key": key, "deleted": True, "version": 7}
