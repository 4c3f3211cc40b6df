"""Issue 14: the server and the OpenAPI document agree (unit level; the full proof is the
schemathesis run in tests/contract/ against a real cluster).

Covers what schemathesis found: the 405 ``Allow`` header, empty ``consistency=``, strict
booleans, the timeout header in exponent notation, integral JSON floats as integers, int64
bounds of path and query integers, JSON errors for requests the HTTP parser refuses, and a
document whose flow-style descriptions parse into what they say.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import prometheus_client
import pytest
import yaml
from kvnode.core.model import Record
from kvnode.http.app import NODE_HEADER, ApiRunner, make_app
from kvnode.http.routes import openapi_document

from tests.unit.http.conftest import Client
from tests.unit.http.fake_service import FakeService

# Keywords a schema object may have in this document; anything else is a YAML accident such as
# `{ description: Seconds (unavailable, overloaded) }` turning `overloaded)` into a key.
SCHEMA_KEYWORDS = frozenset(
    {
        "type", "properties", "required", "additionalProperties", "items", "oneOf", "allOf",
        "anyOf", "enum", "const", "minimum", "maximum", "exclusiveMinimum", "minLength",
        "maxLength", "minItems", "maxItems", "pattern", "format", "default", "description",
        "$ref", "examples",
    }
)  # fmt: skip


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [("POST", "/v1/kv/k", "DELETE, GET, PUT"), ("TRACE", "/healthz", "GET")],
)
async def test_405_carries_the_allow_header(
    client: Client, method: str, path: str, allow: str
) -> None:
    resp = await client.request(method, path)
    assert resp.status == 405
    assert resp.headers["Allow"] == allow
    assert (await resp.json())["allowed"] == allow.split(", ")


async def test_empty_consistency_is_refused(client: Client, service: FakeService) -> None:
    service.data["k"] = Record("v", 1)
    for path in ("/v1/kv/k?consistency=", "/v1/kv?consistency="):
        resp = await client.get(path)
        assert resp.status == 400
        assert (await resp.json())["field"] == "consistency"


@pytest.mark.parametrize("raw", ["", "1", "0", "yes"])
async def test_keys_only_takes_only_true_or_false(client: Client, raw: str) -> None:
    resp = await client.get(f"/v1/kv?keys_only={raw}")
    assert resp.status == 400
    assert (await resp.json())["field"] == "keys_only"


@pytest.mark.parametrize(("raw", "seconds"), [("2.5e-1", 0.25), ("5E+1", 50.0), ("1e-3", 0.001)])
async def test_timeout_accepts_exponent_notation(
    client: Client, service: FakeService, raw: str, seconds: float
) -> None:
    service.data["k"] = Record("v", 1)
    resp = await client.get("/v1/kv/k", headers={"X-Ringkv-Timeout": raw})
    assert resp.status == 200
    assert service.calls[-1][1][2].timeout_s == pytest.approx(seconds)


@pytest.mark.parametrize("raw", ["0", "0e5", "6.1e1", "1e400", "nan", "-1", "1e", "e1"])
async def test_timeout_out_of_range_or_malformed_is_400(client: Client, raw: str) -> None:
    resp = await client.get("/v1/kv/k", headers={"X-Ringkv-Timeout": raw})
    assert resp.status == 400
    assert (await resp.json())["field"] == "X-Ringkv-Timeout"


async def test_integral_json_float_is_an_integer(client: Client, service: FakeService) -> None:
    """JSON Schema calls 3.0 an integer; so does the server."""
    service.data["k"] = Record("v", 3)
    resp = await client.put("/v1/kv/k", json={"value": "w", "if_version": 3.0})
    assert resp.status == 200
    assert service.calls[-1][1][0].cond.if_version == 3


@pytest.mark.parametrize(
    "path",
    [
        "/v1/admin/partitions/9223372036854775808",
        "/v1/internal/scan?partition=9223372036854775808",
    ],
)
async def test_integers_over_int64_are_400(client: Client, path: str) -> None:
    resp = await client.get(path)
    assert resp.status in (400, 404)  # 404 no_route: this app has no admin API
    if resp.status == 400:
        assert (await resp.json())["field"] == "partition"


# ---------------------------------------------------------------- errors before routing


@pytest.fixture
async def real_server() -> AsyncIterator[tuple[str, int]]:
    """The app behind ``ApiRunner`` on a real socket (the test client bypasses the runner)."""
    app = make_app(FakeService(), registry=prometheus_client.CollectorRegistry())
    runner = ApiRunner(app, node_id="n0", access_log=None)
    await runner.setup()
    from aiohttp import web

    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None
    port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield "127.0.0.1", port
    finally:
        await runner.cleanup()


async def _raw(addr: tuple[str, int], request: bytes) -> tuple[int, dict[str, str], Any]:
    reader, writer = await asyncio.open_connection(*addr)
    try:
        writer.write(request)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
    return status, headers, yaml.safe_load(body)  # JSON is YAML


@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        (b"GET /v1/kv/k HTTP/1.1\r\nHost: x\r\nX-Bad: a\x00b\r\n\r\n", 400, "invalid_argument"),
        (b"NOT HTTP AT ALL\r\n\r\n", 400, "invalid_argument"),
        (b"GET /v1/kv/k HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n", 413,
         "too_large"),
        (b"GET /v1/kv/k HTTP/1.1\r\nHost: x\r\nContent-Length: zz\r\n\r\n", 400,
         "invalid_argument"),
        (b"PUT /v1/kv/k HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n", 400,
         "invalid_argument"),
        (b"PUT /v1/kv/k HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
         b"5\r\n{\"valXX\r\n", 400, "invalid_argument"),
    ],
)  # fmt: skip
async def test_requests_refused_by_the_http_parser_get_the_json_error(
    real_server: tuple[str, int], request_bytes: bytes, status: int, code: str
) -> None:
    got, headers, body = await _raw(real_server, request_bytes)
    assert got == status
    assert headers["content-type"].startswith("application/json")
    assert headers[NODE_HEADER.lower()] == "n0"
    assert body["code"] == code
    assert body["message"]


async def test_a_valid_request_through_the_runner_is_unchanged(
    real_server: tuple[str, int],
) -> None:
    got, headers, body = await _raw(real_server, b"GET /v1/kv/k HTTP/1.1\r\nHost: x\r\n"
                                    b"Connection: close\r\n\r\n")  # fmt: skip
    assert (got, body["code"]) == (404, "not_found")
    assert headers[NODE_HEADER.lower()] == "n0"


# ---------------------------------------------------------------- the document itself


def _schemas(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every schema object in the document (under any ``schema`` key or ``components.schemas``)."""
    found: list[tuple[str, dict[str, Any]]] = []

    def walk(schema: Any, where: str) -> None:
        if not isinstance(schema, dict):
            return
        found.append((where, schema))
        for key in ("items", "additionalProperties"):
            walk(schema.get(key), f"{where}.{key}")
        for key in ("oneOf", "allOf", "anyOf"):
            for i, sub in enumerate(schema.get(key, [])):
                walk(sub, f"{where}.{key}[{i}]")
        for name, sub in schema.get("properties", {}).items():
            walk(sub, f"{where}.properties.{name}")

    def visit(obj: Any, where: str) -> None:
        if isinstance(obj, dict):
            for key, value in obj.items():
                if key == "schema":
                    walk(value, f"{where}.schema")
                else:
                    visit(value, f"{where}.{key}")
        elif isinstance(obj, list):
            for i, value in enumerate(obj):
                visit(value, f"{where}[{i}]")

    visit(node, path)
    for name, schema in node["components"]["schemas"].items():
        walk(schema, f"components.schemas.{name}")
    return found


def test_every_schema_uses_only_known_keywords() -> None:
    """Issue 14: flow-style descriptions with a comma had parsed into stray keywords."""
    doc = yaml.safe_load(openapi_document())
    stray = [(where, sorted(set(s) - SCHEMA_KEYWORDS)) for where, s in _schemas(doc)]
    assert [s for s in stray if s[1]] == []
    for where, schema in _schemas(doc):
        assert isinstance(schema.get("description", ""), str), where


def test_full_entry_matches_only_the_entry_schema_of_a_page() -> None:
    doc = yaml.safe_load(openapi_document())
    schemas = doc["components"]["schemas"]
    assert schemas["KeyOnly"]["additionalProperties"] is False
    assert schemas["Entry"]["additionalProperties"] is False


def test_every_error_status_of_the_table_is_documented_where_it_occurs() -> None:
    doc = yaml.safe_load(openapi_document())
    list_keys = doc["paths"]["/v1/kv"]["get"]["responses"]
    assert {"409", "421"} <= set(list_keys)
    for path, item in doc["paths"].items():
        if path.startswith("/v1/admin/partitions/"):
            for method, op in item.items():
                if method in ("get", "post", "delete"):
                    assert {"400", "503"} <= set(op["responses"]), (method, path)


@pytest.mark.parametrize("encoded", ["a%0Ab", "%0A%1C%C2%8A", "x%0D%0Ay", "%0A"])
async def test_keys_with_newlines_are_routed(
    client: Client, service: FakeService, encoded: str
) -> None:
    """Found by schemathesis: the route pattern `.*` stopped at a newline (404 no_route)."""
    from urllib.parse import unquote

    resp = await client.put(f"/v1/kv/{encoded}", json={"value": "v"})
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["key"] == unquote(encoded)
    got = await client.get(f"/v1/kv/{encoded}")
    assert (await got.json())["value"] == "v"
