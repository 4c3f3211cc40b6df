"""The error table: every domain error the service raises has one status and a JSON body."""

from __future__ import annotations

import logging

import pytest
from kvnode.core import errors
from kvnode.http import errors as http_errors

from tests.unit.http.conftest import Client
from tests.unit.http.fake_service import FakeService

TABLE = [
    (errors.InvalidArgument("bad", field="x"), 400, None),
    (errors.TooLarge("big", field="value", limit=3), 413, None),
    (errors.NotFound("gone", key="k"), 404, None),
    (errors.PreconditionFailed("no", key="k", current_version=4), 412, None),
    (errors.StaleEpoch("old", map={"epoch": 9}), 409, None),
    (errors.NotLeader("ask n2", leader="n2"), 421, None),
    (errors.NotOwner("not mine"), 421, None),
    (errors.Unavailable("no leader", retry_after=2.5), 503, "3"),
    (errors.Unavailable("no leader"), 503, "1"),
    (errors.Overloaded("busy", retry_after=0.1), 429, "1"),
    (errors.Overloaded("busy", retry_after="soon"), 429, "1"),
    (errors.UnknownOutcome("maybe"), 504, None),
    (errors.Internal("bug"), 500, None),
]

ROUTES = [
    ("GET", "/v1/kv/k", None),
    ("PUT", "/v1/kv/k", {"value": "v"}),
    ("DELETE", "/v1/kv/k", None),
    ("GET", "/v1/kv", None),
    ("GET", "/v1/cluster", None),
    ("POST", "/v1/batch", {"ops": [{"op": "put", "key": "k", "value": "v"}]}),
]


@pytest.mark.parametrize(("exc", "status", "retry_after"), TABLE, ids=lambda v: str(v)[:20])
@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=lambda v: str(v)[:12])
async def test_domain_error_maps_to_status_and_body(
    client: Client,
    service: FakeService,
    exc: errors.KvError,
    status: int,
    retry_after: str | None,
    method: str,
    path: str,
    body: dict | None,
) -> None:
    service.fail_with = exc
    resp = await client.request(method, path, json=body)
    assert resp.status == status
    assert resp.headers.get("Retry-After") == retry_after
    assert resp.headers["X-Ringkv-Node"] == "n0"
    assert resp.content_type == "application/json"
    assert await resp.json() == exc.to_dict()
    assert errors.error_from_dict(await resp.json()).__class__ is type(exc)


def test_table_covers_every_domain_code() -> None:
    assert set(errors.ERRORS_BY_CODE) <= set(http_errors.STATUS_BY_CODE)


async def test_unexpected_exception_is_logged_500(
    client: Client, service: FakeService, caplog: pytest.LogCaptureFixture
) -> None:
    service.fail_with = RuntimeError("boom")
    with caplog.at_level(logging.ERROR, logger="kvnode.http.app"):
        resp = await client.get("/v1/kv/k")
    assert resp.status == 500
    body = await resp.json()
    assert body["code"] == "internal"
    assert "boom" not in body["message"]
    [record] = [r for r in caplog.records if r.name == "kvnode.http.app"]
    assert record.exc_info is not None
    assert "RuntimeError" in caplog.text


async def test_internal_domain_error_is_logged(
    client: Client, service: FakeService, caplog: pytest.LogCaptureFixture
) -> None:
    service.fail_with = errors.Internal("state machine bug")
    with caplog.at_level(logging.ERROR, logger="kvnode.http.app"):
        resp = await client.get("/v1/kv/k")
    assert resp.status == 500
    assert "state machine bug" in caplog.text


async def test_unknown_route_is_404_no_route(client: Client) -> None:
    resp = await client.get("/v2/nothing")
    assert resp.status == 404
    body = await resp.json()
    assert body["code"] == "no_route"
    assert body["path"] == "/v2/nothing"
    assert resp.headers["X-Ringkv-Node"] == "n0"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/kv/k"),
        ("PATCH", "/v1/kv/k"),
        ("GET", "/v1/batch"),
        ("DELETE", "/v1/kv"),
        ("POST", "/healthz"),
        ("GET", "/v1/admin/map"),
        ("HEAD", "/v1/kv/k"),
    ],
)
async def test_wrong_method_is_405_json(client: Client, method: str, path: str) -> None:
    resp = await client.request(method, path)
    assert resp.status == 405
    assert resp.headers["X-Ringkv-Node"] == "n0"
    if method != "HEAD":
        body = await resp.json()
        assert body["code"] == "method_not_allowed"
        assert body["allowed"]


async def test_body_over_limit_is_413_json(client: Client, service: FakeService) -> None:
    big = b'{"value": "' + b"x" * service.limits.max_body_bytes + b'"}'
    resp = await client.put("/v1/kv/k", data=big)
    assert resp.status == 413
    body = await resp.json()
    assert (body["code"], body["field"]) == ("too_large", "body")
    assert service.calls == []


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(None, 1), (0, 1), (0.2, 1), (2, 2), (2.1, 3), (True, 1), (float("inf"), 1)],
)
def test_retry_after_seconds(raw: object, expected: int) -> None:
    assert http_errors.retry_after_seconds(raw) == expected
