"""POST /v1/batch: validation up front, per-partition outcomes reported exactly."""

from __future__ import annotations

from kvnode.core import errors
from kvnode.core.hashing import partition_of
from kvnode.core.model import Record
from kvnode.core.ops import Delete, Put

from tests.unit.http.conftest import Client
from tests.unit.http.fake_service import PARTITIONS, FakeService


def keys_in_distinct_partitions(n: int) -> list[str]:
    found: dict[int, str] = {}
    i = 0
    while len(found) < n:
        found.setdefault(partition_of(f"key{i}", PARTITIONS), f"key{i}")
        i += 1
    return list(found.values())


async def test_batch_applies_puts_and_deletes(client: Client, service: FakeService) -> None:
    service.data["old"] = Record("x", 1)
    body = {
        "ops": [
            {"op": "put", "key": "a", "value": "1", "ttl": 2},
            {"op": "put", "key": "b", "value": "2", "if_version": 0},
            {"op": "delete", "key": "old", "if_value": "x"},
        ]
    }
    resp = await client.post("/v1/batch", json=body)
    assert resp.status == 200
    result = await resp.json()
    assert result["applied"] is True
    by_key = {r["key"]: r for r in result["results"]}
    assert [r["key"] for r in result["results"]] == ["a", "b", "old"]
    assert by_key["old"] == {
        "index": 2,
        "key": "old",
        "applied": True,
        "version": 1,
        "existed": True,
    }
    assert by_key["a"]["existed"] is False
    ops, atomic, _ctx = service.calls[-1][1]
    assert atomic is False
    assert ops[0] == Put("a", "1", ttl_ms=2000)
    assert isinstance(ops[2], Delete)
    assert ops[2].cond.if_value == "x"


async def test_atomic_flag_is_passed(client: Client, service: FakeService) -> None:
    body = {"ops": [{"op": "put", "key": "u:{1}:a", "value": "1"}], "atomic": True}
    resp = await client.post("/v1/batch", json=body)
    assert resp.status == 200
    assert service.calls[-1][1][1] is True


async def test_atomic_batch_across_partitions_is_refused_by_service(client: Client) -> None:
    k1, k2 = keys_in_distinct_partitions(2)
    body = {
        "ops": [{"op": "put", "key": k1, "value": "1"}, {"op": "put", "key": k2, "value": "2"}],
        "atomic": True,
    }
    resp = await client.post("/v1/batch", json=body)
    assert resp.status == 400
    assert (await resp.json())["code"] == "invalid_argument"


async def test_partly_applied_batch_is_200_and_says_exactly_what_applied(
    client: Client, service: FakeService
) -> None:
    """Issue 8: a failed condition in one partition while another applied is not a 412."""
    ok_key, bad_key = keys_in_distinct_partitions(2)
    service.data[bad_key] = Record("v", 5)
    body = {
        "ops": [
            {"op": "put", "key": ok_key, "value": "1"},
            {"op": "put", "key": bad_key, "value": "2", "if_version": 4},
        ]
    }
    resp = await client.post("/v1/batch", json=body)
    assert resp.status == 200
    result = await resp.json()
    assert result["applied"] is False
    assert "code" not in result
    ok, bad = result["results"]
    assert ok == {"index": 0, "key": ok_key, "applied": True, "version": 1, "existed": False}
    assert (bad["index"], bad["key"], bad["applied"]) == (1, bad_key, False)
    assert bad["error"]["code"] == "precondition_failed"
    assert bad["error"]["current_version"] == 5
    # the error names the failing op by its position in the request, not in its partition
    assert (bad["error"]["index"], bad["error"]["key"]) == (1, bad_key)
    assert service.data[bad_key] == Record("v", 5)
    assert service.data[ok_key].value == "1"


def keys_in_one_partition(n: int) -> list[str]:
    return [f"acct:{{7}}:{i}" for i in range(n)]


async def test_atomic_failure_index_is_the_request_position(
    client: Client, service: FakeService
) -> None:
    """Issue 8: the same ``index`` in atomic and non-atomic batches: ops[2] is index 2."""
    a, b, c = keys_in_one_partition(3)
    service.data[c] = Record("v", 5)
    body = {
        "ops": [
            {"op": "put", "key": a, "value": "1"},
            {"op": "delete", "key": b},
            {"op": "put", "key": c, "value": "2", "if_version": 4},
        ],
        "atomic": True,
    }
    resp = await client.post("/v1/batch", json=body)
    assert resp.status == 412
    result = await resp.json()
    assert (result["code"], result["index"], result["key"]) == ("precondition_failed", 2, c)
    assert result["applied"] is False
    assert [r["applied"] for r in result["results"]] == [False, False, False]
    assert all(r["error"]["index"] == 2 for r in result["results"])
    assert a not in service.data


async def test_non_atomic_index_matches_atomic_index(client: Client, service: FakeService) -> None:
    other, bad = keys_in_distinct_partitions(2)
    service.data[bad] = Record("v", 5)
    ops = [
        {"op": "delete", "key": other, "if_version": 9},
        {"op": "put", "key": bad, "value": "2", "if_version": 4},
    ]
    resp = await client.post("/v1/batch", json={"ops": ops})
    assert resp.status == 412  # nothing applied: the first failed op's status
    result = await resp.json()
    assert result["index"] == 0  # ops[0] failed first (its own partition)
    assert result["results"][1]["error"]["index"] == 1


async def test_unavailable_partition_with_nothing_applied_gives_503_with_retry_after(
    client: Client, service: FakeService
) -> None:
    k1, k2 = keys_in_distinct_partitions(2)
    for k in (k1, k2):
        service.failing_partitions[partition_of(k, PARTITIONS)] = errors.Unavailable(
            "no leader", retry_after=2
        )
    body = {"ops": [{"op": "delete", "key": k1}, {"op": "put", "key": k2, "value": "v"}]}
    resp = await client.post("/v1/batch", json=body)
    assert resp.status == 503
    assert resp.headers["Retry-After"] == "2"
    result = await resp.json()
    assert [r["applied"] for r in result["results"]] == [False, False]
    assert result["results"][1]["error"]["code"] == "unavailable"


async def test_unavailable_partition_after_another_applied_is_200(
    client: Client, service: FakeService
) -> None:
    k1, k2 = keys_in_distinct_partitions(2)
    service.failing_partitions[partition_of(k2, PARTITIONS)] = errors.Unavailable("no leader")
    body = {"ops": [{"op": "delete", "key": k1}, {"op": "put", "key": k2, "value": "v"}]}
    resp = await client.post("/v1/batch", json=body)
    assert resp.status == 200
    assert "Retry-After" not in resp.headers
    result = await resp.json()
    assert [r["applied"] for r in result["results"]] == [True, False]


async def test_first_error_in_request_order_decides_status(
    client: Client, service: FakeService
) -> None:
    k1, k2 = keys_in_distinct_partitions(2)
    service.failing_partitions[partition_of(k1, PARTITIONS)] = errors.NotLeader("x", leader="n2")
    service.failing_partitions[partition_of(k2, PARTITIONS)] = errors.Unavailable("y")
    body = {"ops": [{"op": "delete", "key": k1}, {"op": "delete", "key": k2}]}
    resp = await client.post("/v1/batch", json=body)
    assert resp.status == 421
    result = await resp.json()
    assert (result["code"], result["leader"]) == ("not_leader", "n2")


async def test_one_bad_op_rejects_the_whole_batch_untouched(
    client: Client, service: FakeService
) -> None:
    ops = [{"op": "put", "key": f"k{i}", "value": "v"} for i in range(10)]
    ops.append({"op": "put", "key": "k10", "value": 3})
    resp = await client.post("/v1/batch", json={"ops": ops})
    assert resp.status == 400
    assert (await resp.json())["field"] == "ops[10].value"
    assert service.calls == []
    assert service.data == {}
