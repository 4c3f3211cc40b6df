"""Cluster, admin, probes, metrics and the OpenAPI document."""

from __future__ import annotations

import re

import prometheus_client
import pytest
import yaml
from aiohttp import web
from kvnode.http.app import make_app
from kvnode.http.routes import openapi_document

from tests.unit.http.conftest import Client
from tests.unit.http.fake_service import FakeService, sample_map


async def test_cluster_returns_service_view(client: Client, service: FakeService) -> None:
    resp = await client.get("/v1/cluster")
    assert resp.status == 200
    body = await resp.json()
    assert body == await service.cluster_info()
    assert body["map"]["epoch"] == 1


async def test_install_map(client: Client, service: FakeService) -> None:
    new = sample_map(epoch=5)
    resp = await client.put("/v1/admin/map", json=new.to_dict())
    assert resp.status == 200
    assert await resp.json() == {"epoch": 5, "installed": True}
    assert service.pmap == new


async def test_install_older_map_is_409(client: Client, service: FakeService) -> None:
    service.pmap = sample_map(epoch=9)
    resp = await client.put("/v1/admin/map", json=sample_map(epoch=3).to_dict())
    assert resp.status == 409
    body = await resp.json()
    assert body["code"] == "stale_epoch"
    assert body["map"]["epoch"] == 9


def _map_with(**changes: object) -> dict:
    d = sample_map().to_dict()
    d.update(changes)
    return d


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        ({k: v for k, v in sample_map().to_dict().items() if k != "nodes"}, "nodes", "required"),
        (_map_with(epoch="one"), "epoch", "integer"),
        (_map_with(epoch=True), "epoch", "integer"),
        (_map_with(partitions=-1), "partitions", "integer"),
        (_map_with(nodes="n0"), "nodes", "array"),
        (_map_with(nodes=["n0"]), "nodes[0]", "object"),
        (_map_with(replicas=[["n0"], "n1", ["n2"], ["n0"]]), "replicas[1]", "node ids"),
        (_map_with(replicas=[["n0"]]), "map", "entries"),
        (_map_with(replicas=[["n0", "n0"]] * 4), "map", "twice"),
        (_map_with(replicas=[["zz"]] * 4), "map", "unknown"),
        (_map_with(nodes=[{"node_id": "n0"}]), "nodes[0].host", "required"),
        (
            _map_with(
                nodes=[{"node_id": "n0", "host": "h", "http_port": "x", "raft_port_base": 1}]
            ),
            "nodes[0].http_port",
            "port number",
        ),
        *[
            (
                _map_with(
                    nodes=[{"node_id": "n0", "host": "h", "http_port": 1, "raft_port_base": bad}]
                ),
                "nodes[0].raft_port_base",
                "must be a port number",
            )
            for bad in ({}, [], None, True, 0, 70000, "7")
        ],
        (
            _map_with(nodes=[{"node_id": "", "host": "h", "http_port": 1, "raft_port_base": 2}]),
            "nodes[0].node_id",
            "must not be empty",
        ),
        (
            _map_with(
                nodes=[
                    {"node_id": "a", "host": "h", "http_port": 1, "raft_port_base": 2, "zone": 3}
                ]
            ),
            "nodes[0].zone",
            "must be a string",
        ),
        (
            _map_with(
                nodes=[{"node_id": "a", "host": "h", "http_port": 1, "raft_port_base": 2, "x": 3}]
            ),
            "nodes[0].x",
            "unknown field",
        ),
        (_map_with(extra=1), "extra", "unknown"),
    ],
)
async def test_malformed_map_is_400_naming_the_problem(
    client: Client, service: FakeService, body: dict, field: str, fragment: str
) -> None:
    resp = await client.put("/v1/admin/map", json=body)
    assert resp.status == 400
    err = await resp.json()
    assert err["code"] == "invalid_argument"
    assert err["field"] == field
    assert fragment in err["message"]
    assert service.calls == []


async def test_partitions(client: Client) -> None:
    resp = await client.get("/v1/admin/partitions")
    body = await resp.json()
    assert [p["partition"] for p in body["partitions"]] == [0, 1, 2, 3]


async def test_healthz(client: Client) -> None:
    resp = await client.get("/healthz")
    assert resp.status == 200
    assert await resp.json() == {"status": "ok", "node_id": "n0", "ticker_lag_s": 0.01}


async def test_healthz_fails_with_the_reason(client: Client, service: FakeService) -> None:
    service.alive = False
    resp = await client.get("/healthz")
    assert resp.status == 503
    body = await resp.json()
    assert body["code"] == "unavailable"
    assert body["reason"] == "ticker_dead"
    assert "ticker" in body["message"]


@pytest.mark.parametrize(("ready", "status"), [(True, 200), (False, 503)])
async def test_readyz(client: Client, service: FakeService, ready: bool, status: int) -> None:
    service.ready = ready
    resp = await client.get("/readyz")
    assert resp.status == status
    body = await resp.json()
    assert body["ready"] is ready
    assert "partitions_without_leader" in body


async def test_metrics_count_requests_per_op_and_code(
    client: Client, registry: prometheus_client.CollectorRegistry
) -> None:
    await client.put("/v1/kv/k", json={"value": "v"})
    await client.get("/v1/kv/k")
    await client.get("/v1/kv/missing")
    await client.get("/no/such/route")
    await client.post("/v1/batch", json={"ops": [{"op": "delete", "key": "k"}]})
    await client.get("/v1/kv")
    await client.get("/v1/cluster")
    await client.get("/v1/admin/partitions")

    def count(op: str, code: str) -> float | None:
        return registry.get_sample_value("ringkv_http_requests_total", {"op": op, "code": code})

    assert count("put", "200") == 1
    assert count("get", "200") == 1
    assert count("get", "404") == 1
    assert count("other", "404") == 1
    assert count("batch", "200") == 1
    assert count("list", "200") == 1
    assert count("cluster", "200") == 1
    assert count("admin", "200") == 1
    hist = registry.get_sample_value("ringkv_http_request_duration_seconds_count", {"op": "get"})
    assert hist == 2
    bucket = registry.get_sample_value(
        "ringkv_http_request_duration_seconds_bucket", {"op": "get", "le": "0.0005"}
    )
    assert bucket is not None

    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    text = await resp.text()
    assert 'ringkv_http_requests_total{code="200",op="put"} 1.0' in text


async def test_openapi_document_is_served(client: Client) -> None:
    resp = await client.get("/v1/openapi.yaml")
    assert resp.status == 200
    assert resp.content_type == "application/yaml"
    assert yaml.safe_load(await resp.read())["openapi"].startswith("3.1")


def test_openapi_lists_exactly_the_app_routes() -> None:
    app = make_app(FakeService(), registry=prometheus_client.CollectorRegistry())
    in_app = {
        (route.method, _plain(route.resource.canonical))
        for route in app.router.routes()
        if isinstance(route, web.ResourceRoute) and route.resource is not None
    }
    doc = yaml.safe_load(openapi_document())
    in_doc = {
        (method.upper(), path)
        for path, item in doc["paths"].items()
        for method in item
        if method in ("get", "put", "post", "delete", "patch", "head", "options")
    }
    assert in_app == in_doc


def test_openapi_error_codes_match_the_table() -> None:
    from kvnode.http.errors import STATUS_BY_CODE

    doc = yaml.safe_load(openapi_document())
    codes = doc["components"]["schemas"]["Error"]["properties"]["code"]["enum"]
    assert set(codes) == set(STATUS_BY_CODE)
    for code, status in STATUS_BY_CODE.items():
        assert re.search(rf"\| {code} \| {status} \|", doc["info"]["description"]), code


def _plain(canonical: str) -> str:
    """``/v1/kv/{key:.*}`` → ``/v1/kv/{key}`` (aiohttp may keep the regex in canonical)."""
    return re.sub(r"\{(\w+):[^}]*\}", r"{\1}", canonical)


async def test_drain_and_undrain(client: Client, service: FakeService) -> None:
    resp = await client.get("/v1/admin/drain")
    assert resp.status == 200
    assert (await resp.json())["drained"] is False
    resp = await client.put(
        "/v1/admin/drain", json={"drained": True}, headers={"X-Ringkv-Timeout": "2"}
    )
    assert resp.status == 200
    assert (await resp.json())["drained"] is True
    assert service.calls[-1] == ("set_drained", (True, 2.0))
    resp = await client.put("/v1/admin/drain", json={"drained": False})
    assert (await resp.json())["drained"] is False


@pytest.mark.parametrize(
    ("body", "fragment"),
    [({}, "required"), ({"drained": "yes"}, "true or false"), ({"drained": 1}, "true or false")],
)
async def test_drain_bad_body(
    client: Client, service: FakeService, body: object, fragment: str
) -> None:
    resp = await client.put("/v1/admin/drain", json=body)
    assert resp.status == 400
    err = await resp.json()
    assert err["code"] == "invalid_argument"
    assert err["field"] == "drained"
    assert fragment in err["message"]
    assert service.calls == []


async def test_drain_unknown_field(client: Client, service: FakeService) -> None:
    resp = await client.put("/v1/admin/drain", json={"drained": True, "now": 1})
    assert resp.status == 400
    assert service.calls == []
