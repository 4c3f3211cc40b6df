"""Success paths of the single-key routes and of listing."""

from __future__ import annotations

import pytest
from kvnode.core.model import Record
from kvnode.core.ops import Consistency, Delete, Put
from yarl import URL

from tests.unit.http.conftest import Client
from tests.unit.http.fake_service import FakeService


def raw(path: str) -> URL:
    """A path sent exactly as written (no re-encoding by the test client)."""
    return URL(path, encoded=True)


async def test_put_then_get(client: Client, service: FakeService) -> None:
    resp = await client.put("/v1/kv/greeting", json={"value": "hello"})
    assert resp.status == 200
    assert await resp.json() == {"key": "greeting", "version": 1}
    assert resp.headers["X-Ringkv-Node"] == "n0"

    resp = await client.get("/v1/kv/greeting")
    assert resp.status == 200
    body = await resp.json()
    assert body == {"key": "greeting", "value": "hello", "version": 1, "expires_at_ms": None}


async def test_get_missing_is_404_not_found(client: Client) -> None:
    resp = await client.get("/v1/kv/nope")
    assert resp.status == 404
    body = await resp.json()
    assert body["code"] == "not_found"
    assert resp.headers["X-Ringkv-Node"] == "n0"


async def test_put_with_ttl_and_conditions(client: Client, service: FakeService) -> None:
    body = {"value": "v", "ttl": 1.5, "if_version": 0, "if_value": None}
    resp = await client.put("/v1/kv/k", json=body)
    assert resp.status == 200
    op, _ctx = service.calls[-1][1]
    assert op == Put("k", "v", ttl_ms=1500, cond=op.cond)
    assert op.cond.if_version == 0
    got = await (await client.get("/v1/kv/k")).json()
    assert got["expires_at_ms"] == service.now_ms + 1500


async def test_tiny_ttl_rounds_up_to_one_ms(client: Client, service: FakeService) -> None:
    assert (await client.put("/v1/kv/k", json={"value": "v", "ttl": 1e-9})).status == 200
    assert service.calls[-1][1][0].ttl_ms == 1


async def test_put_failed_condition_is_412_with_current_version(client: Client) -> None:
    await client.put("/v1/kv/k", json={"value": "a"})
    resp = await client.put("/v1/kv/k", json={"value": "b", "if_version": 7})
    assert resp.status == 412
    body = await resp.json()
    assert body["code"] == "precondition_failed"
    assert body["current_version"] == 1


async def test_cas_by_value(client: Client) -> None:
    await client.put("/v1/kv/k", json={"value": "a"})
    resp = await client.put("/v1/kv/k", json={"value": "b", "if_value": "a"})
    assert resp.status == 200
    resp = await client.put("/v1/kv/k", json={"value": "c", "if_value": "a"})
    assert resp.status == 412


async def test_delete(client: Client, service: FakeService) -> None:
    await client.put("/v1/kv/k", json={"value": "a"})
    resp = await client.delete("/v1/kv/k")
    assert await resp.json() == {"key": "k", "deleted": True, "version": 1}
    resp = await client.delete("/v1/kv/k")
    assert await resp.json() == {"key": "k", "deleted": False, "version": 0}


async def test_conditional_delete(client: Client, service: FakeService) -> None:
    await client.put("/v1/kv/k", json={"value": "a b"})
    resp = await client.delete("/v1/kv/k", params={"if_version": "5"})
    assert resp.status == 412
    resp = await client.delete(raw("/v1/kv/k?if_value=a+b&if_version=1"))
    assert resp.status == 200
    op = service.calls[-1][1][0]
    assert isinstance(op, Delete)
    assert (op.cond.if_version, op.cond.if_value) == (1, "a b")


@pytest.mark.parametrize(
    ("path", "key"),
    [
        ("/v1/kv/a/b/c", "a/b/c"),
        ("/v1/kv/a%2Fb", "a/b"),
        ("/v1/kv/caf%C3%A9", "café"),
        ("/v1/kv/sp%20ace", "sp ace"),
        ("/v1/kv/plus+sign", "plus+sign"),
        ("/v1/kv/user:%7B42%7D:name", "user:{42}:name"),
        ("/v1/kv/%2e%2e", ".."),
        ("/v1/kv/q%3Fmark", "q?mark"),
    ],
)
async def test_key_is_the_percent_decoded_rest_of_the_path(
    client: Client, service: FakeService, path: str, key: str
) -> None:
    service.data[key] = Record("v", 3)
    resp = await client.get(raw(path))
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["key"] == key


async def test_headers_become_request_context(client: Client, service: FakeService) -> None:
    headers = {
        "X-Ringkv-Epoch": "7",
        "X-Ringkv-Forward": "0",
        "X-Ringkv-Hops": "2",
        "X-Ringkv-Timeout": "0.25",
    }
    await client.get("/v1/kv/k", params={"consistency": "eventual"}, headers=headers)
    key, consistency, ctx = service.calls[-1][1]
    assert (key, consistency) == ("k", Consistency.EVENTUAL)
    assert (ctx.epoch, ctx.forward, ctx.hops, ctx.timeout_s) == (7, False, 2, 0.25)


async def test_default_request_context(client: Client, service: FakeService) -> None:
    await client.get("/v1/kv/k")
    _key, consistency, ctx = service.calls[-1][1]
    assert consistency is Consistency.STRONG
    assert (ctx.epoch, ctx.forward, ctx.hops, ctx.timeout_s) == (None, True, 0, 5.0)


async def test_list_pages_with_cursor(client: Client, service: FakeService) -> None:
    for i in range(5):
        service.data[f"p/{i}"] = Record(str(i), i + 1)
    service.data["other"] = Record("x", 9)
    resp = await client.get("/v1/kv", params={"prefix": "p/", "limit": "2"})
    body = await resp.json()
    assert [it["key"] for it in body["items"]] == ["p/0", "p/1"]
    assert body["items"][0] == {"key": "p/0", "value": "0", "version": 1, "expires_at_ms": None}
    assert body["next_cursor"] == "p/1"
    resp = await client.get(
        "/v1/kv",
        params={"prefix": "p/", "cursor": "p/3", "keys_only": "true", "consistency": "eventual"},
    )
    body = await resp.json()
    assert body == {"items": [{"key": "p/4"}], "next_cursor": None}
    assert service.calls[-1][1][3] is Consistency.EVENTUAL


async def test_list_defaults(client: Client, service: FakeService) -> None:
    resp = await client.get("/v1/kv")
    assert await resp.json() == {"items": [], "next_cursor": None}
    assert service.calls[-1][1][:3] == ("", None, 100)


async def test_internal_scan_of_one_partition(client: Client, service: FakeService) -> None:
    from kvnode.core.hashing import partition_of

    from tests.unit.http.fake_service import PARTITIONS

    for i in range(20):
        service.data[f"s{i:02d}"] = Record(str(i), i + 1)
    part = partition_of("s00", PARTITIONS)
    want = sorted(k for k in service.data if partition_of(k, PARTITIONS) == part)
    resp = await client.get(
        "/v1/internal/scan", params={"partition": str(part), "prefix": "s", "limit": "2"}
    )
    assert resp.status == 200
    body = await resp.json()
    assert [i["key"] for i in body["items"]] == want[:2]
    assert body["items"][0]["value"] == service.data[want[0]].value
    assert body["more"] is (len(want) > 2)


@pytest.mark.parametrize(
    "query", ["", "?partition=x", "?partition=-1", "?partition=1&bogus=2", "?partition=1&limit=0"]
)
async def test_internal_scan_bad_query(client: Client, service: FakeService, query: str) -> None:
    resp = await client.get(raw("/v1/internal/scan" + query))
    assert resp.status == 400
    assert (await resp.json())["code"] == "invalid_argument"
    assert service.calls == []


async def test_internal_scan_absent_without_scan_api(aiohttp_client, service: FakeService) -> None:  # type: ignore[no-untyped-def]
    import prometheus_client
    from kvnode.http.app import make_app

    class NoScan:
        def __getattr__(self, name: str) -> object:
            if name == "scan_partition":
                raise AttributeError(name)
            return getattr(service, name)

    app = make_app(NoScan(), registry=prometheus_client.CollectorRegistry())  # type: ignore[arg-type]
    client = await aiohttp_client(app)
    resp = await client.get("/v1/internal/scan?partition=0")
    assert resp.status == 404
    assert (await resp.json())["code"] == "no_route"
