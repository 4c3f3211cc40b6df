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
    assert by_key["old"] == {"key": "old", "version": 1, "existed": True}
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


async def test_failed_partition_reports_exactly_what_applied(
    client: Client, service: FakeService
) -> None:
    ok_key, bad_key = keys_in_distinct_partitions(2)
    service.data[bad_key] = Record("v", 5)
    body = {
        "ops": [
            {"op": "put", "key": ok_key, "value": "1"},
            {"op": "put", "key": bad_key, "value": "2", "if_version": 4},
        ]
    }
    resp = await client.post("/v1/batch", json=body)
    assert resp.status == 412
    result = await resp.json()
    assert result["code"] == "precondition_failed"
    assert result["applied"] is False
    ok, bad = result["results"]
    assert ok == {"key": ok_key, "ok": True, "version": 1, "existed": False}
    assert bad["key"] == bad_key
    assert bad["ok"] is False
    assert bad["error"]["code"] == "precondition_failed"
    assert bad["error"]["current_version"] == 5
    assert service.data[bad_key] == Record("v", 5)
    assert service.data[ok_key].value == "1"


async def test_unavailable_partition_gives_503_with_retry_after(
    client: Client, service: FakeService
) -> None:
    k1, k2 = keys_in_distinct_partitions(2)
    service.failing_partitions[partition_of(k2, PARTITIONS)] = errors.Unavailable(
        "no leader", retry_after=2
    )
    body = {"ops": [{"op": "delete", "key": k1}, {"op": "put", "key": k2, "value": "v"}]}
    resp = await client.post("/v1/batch", json=body)
    assert resp.status == 503
    assert resp.headers["Retry-After"] == "2"
    result = await resp.json()
    assert [r["ok"] for r in result["results"]] == [True, False]
    assert result["results"][1]["error"]["code"] == "unavailable"


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
