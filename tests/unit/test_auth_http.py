"""Issue 12: the auth middleware over the real aiohttp app and a fake service.

Every route of ``routes.ROUTES`` is classified (a table here, so a change of policy is a
visible change of this test); routes added later need admin; 401 vs 403 with JSON bodies and
``WWW-Authenticate``; prefix scopes for keys, listings and batches; the token never shows up in
a response, a log line or the metrics. The same matrix runs on real node processes in
``tests/integration/test_auth_matrix.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import prometheus_client
import pytest
from aiohttp import web
from kvnode.auth import tokens
from kvnode.auth.tokens import Role
from kvnode.core import errors
from kvnode.core.model import Record
from kvnode.http import routes
from kvnode.http.app import make_app
from kvnode.http.auth import AuthConfig, Need, Scope, need_of

from tests.unit.http.conftest import Client
from tests.unit.http.fake_service import FakeService

TOKENS = {
    "reader": tokens.new_token(),
    "writer": tokens.new_token(),
    "admin": tokens.new_token(),
    "app": tokens.new_token(),  # write, prefix app/
    "appread": tokens.new_token(),  # read, prefix app/
}
ROLES = {"reader": Role.READ, "writer": Role.WRITE, "admin": Role.ADMIN}


def token_table() -> tokens.TokenTable:
    entries = [tokens.entry_json(name=n, role=r, token=TOKENS[n]) for n, r in ROLES.items()]
    entries.append(
        tokens.entry_json(name="app", role=Role.WRITE, token=TOKENS["app"], prefix="app/")
    )
    entries.append(
        tokens.entry_json(name="appread", role=Role.READ, token=TOKENS["appread"], prefix="app/")
    )
    return tokens.parse_table({"tokens": entries})


def bearer(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[name]}"}


async def make(
    aiohttp_client: Callable[..., Awaitable[Client]],
    service: FakeService,
    *,
    metrics_open: bool = True,
    extra_route: bool = False,
) -> Client:
    table = token_table()
    app = make_app(
        service,
        registry=prometheus_client.CollectorRegistry(),
        auth=AuthConfig(table=lambda: table, metrics_open=metrics_open),
    )
    if extra_route:  # what another team adds later without touching the auth rules

        async def future(request: web.Request) -> web.Response:
            return web.json_response({"new": True})

        app.router.add_get("/v1/future", future, name="future.get")
    return await aiohttp_client(app)


@pytest.fixture
def service() -> FakeService:
    return FakeService()


@pytest.fixture
async def client(aiohttp_client: Callable[..., Awaitable[Client]], service: FakeService) -> Client:
    """The app without auth (no tokens file configured)."""
    return await aiohttp_client(make_app(service, registry=prometheus_client.CollectorRegistry()))


@pytest.fixture
async def authed(aiohttp_client: Callable[..., Awaitable[Client]], service: FakeService) -> Client:
    return await make(aiohttp_client, service)


# Every route, the least role it needs (None: open), with a request that reaches it.
EXPECTED: dict[str, Role | None] = {
    "list_keys.get": Role.READ,
    "get_key.get": Role.READ,
    "put_key.put": Role.WRITE,
    "delete_key.delete": Role.WRITE,
    "scan_partition.get": Role.ADMIN,
    "batch.post": Role.WRITE,
    "cluster.get": Role.READ,
    "install_map.put": Role.ADMIN,
    "partitions.get": Role.ADMIN,
    "drain_state.get": Role.ADMIN,
    "set_drain.put": Role.ADMIN,
    "replica_state.get": Role.ADMIN,
    "drop.delete": Role.ADMIN,
    "seed_snapshot.get": Role.ADMIN,
    "join.post": Role.ADMIN,
    "members.post": Role.ADMIN,
    "leader.post": Role.ADMIN,
    "start_digest.post": Role.ADMIN,
    "digest.get": Role.ADMIN,
    "backup_snapshot.get": Role.ADMIN,
    "restore.post": Role.ADMIN,
    "healthz.get": None,
    "readyz.get": None,
    "metrics.get": None,
    "openapi.get": None,
}


def test_every_route_is_classified_as_expected() -> None:
    names = {f"{name}.{method.lower()}" for method, _, name, _ in routes.ROUTES}
    assert names == set(EXPECTED), "a route was added or removed: classify it here"
    for name, role in EXPECTED.items():
        assert need_of(name, metrics_open=True).role == role, name
    assert need_of("metrics.get", metrics_open=False).role is Role.READ
    assert need_of("anything.new", metrics_open=True).role is Role.ADMIN


def _request_for(route: str) -> tuple[str, str, Any]:
    method, path = next((m, p) for m, p, n, _ in routes.ROUTES if f"{n}.{m.lower()}" == route)
    path = path.replace("{key:[\\s\\S]*}", "k").replace("{p}", "1")
    body: Any = None
    if route == "put_key.put":
        body = {"value": "v"}
    elif route == "batch.post":
        body = {"ops": [{"op": "put", "key": "k", "value": "v"}]}
    elif route == "set_drain.put":
        body = {"drained": False}
    return method, path, body


@pytest.mark.parametrize("route", sorted(EXPECTED))
@pytest.mark.parametrize("who", [None, "bogus", "reader", "writer", "admin"])
async def test_role_matrix(
    authed: Client, service: FakeService, route: str, who: str | None
) -> None:
    service.data["k"] = Record("v", 1)
    method, path, body = _request_for(route)
    if who is None:
        headers: dict[str, str] = {}
    elif who == "bogus":
        headers = {"Authorization": f"Bearer {tokens.new_token()}"}
    else:
        headers = bearer(who)
    resp = await authed.request(method, path, json=body, headers=headers)
    need = EXPECTED[route]
    if need is None:
        assert resp.status not in (401, 403), await resp.text()
        return
    if who in (None, "bogus"):
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        assert (await resp.json())["code"] == "unauthenticated"
    elif ROLES[who] < need:
        assert resp.status == 403
        doc = await resp.json()
        assert doc["code"] == "permission_denied"
        assert doc["required"] == need.label
    else:
        assert resp.status not in (401, 403), await resp.text()


async def test_other_schemes_and_malformed_headers_are_401(authed: Client) -> None:
    for header in ("Basic YTpi", "Bearer", TOKENS["admin"], f"Token {TOKENS['admin']}"):
        resp = await authed.get("/v1/kv/k", headers={"Authorization": header})
        assert resp.status == 401, header


async def test_unknown_path_is_still_404(authed: Client) -> None:
    resp = await authed.get("/v1/nothing-here")
    assert resp.status == 404
    assert (await resp.json())["code"] == "no_route"


async def test_routes_added_later_need_admin_by_default(
    aiohttp_client: Callable[..., Awaitable[Client]], service: FakeService
) -> None:
    c = await make(aiohttp_client, service, extra_route=True)
    assert (await c.get("/v1/future")).status == 401
    assert (await c.get("/v1/future", headers=bearer("writer"))).status == 403
    assert (await c.get("/v1/future", headers=bearer("admin"))).status == 200


async def test_a_watch_needs_read_within_the_token_scope_and_the_node_feed_needs_admin(
    authed: Client,
) -> None:
    assert need_of("watch.get", metrics_open=True) == Need(Role.READ, Scope.LIST)
    assert need_of("internal_watch.get", metrics_open=True).role is Role.ADMIN
    assert (await authed.get("/v1/watch?prefix=app/")).status == 401
    # No watch service in this app: an allowed watch reaches the route's 503.
    assert (await authed.get("/v1/watch?prefix=app/x", headers=bearer("appread"))).status == 503
    out = await authed.get("/v1/watch?prefix=other/", headers=bearer("appread"))
    assert out.status == 403
    assert (await out.json())["code"] == "permission_denied"
    assert (await authed.get("/v1/watch", headers=bearer("appread"))).status == 403  # everything
    feed = await authed.get("/v1/internal/watch?partition=0", headers=bearer("reader"))
    assert feed.status == 403


async def test_metrics_can_require_a_token(
    aiohttp_client: Callable[..., Awaitable[Client]], service: FakeService
) -> None:
    c = await make(aiohttp_client, service, metrics_open=False)
    assert (await c.get("/metrics")).status == 401
    assert (await c.get("/metrics", headers=bearer("appread"))).status == 200
    assert (await c.get("/healthz")).status == 200
    assert (await c.get("/readyz")).status == 200


async def test_prefix_scope_of_single_keys(authed: Client, service: FakeService) -> None:
    service.data["app/x"] = Record("1", 1)
    service.data["other"] = Record("2", 2)
    assert (await authed.get("/v1/kv/app/x", headers=bearer("appread"))).status == 200
    assert (await authed.get("/v1/kv/app%2Fx", headers=bearer("appread"))).status == 200
    resp = await authed.get("/v1/kv/other", headers=bearer("appread"))
    assert resp.status == 403
    assert (await resp.json())["keys"] == ["other"]
    assert (
        await authed.put("/v1/kv/app/y", json={"value": "v"}, headers=bearer("app"))
    ).status == 200
    resp = await authed.put("/v1/kv/apple", json={"value": "v"}, headers=bearer("app"))
    assert resp.status == 403
    assert "apple" not in service.data
    assert (await authed.delete("/v1/kv/other", headers=bearer("app"))).status == 403
    assert "other" in service.data
    assert (
        await authed.put("/v1/kv/app/z", json={"value": "v"}, headers=bearer("appread"))
    ).status == 403


async def test_prefix_scope_of_listings(authed: Client, service: FakeService) -> None:
    service.data.update({"app/1": Record("a", 1), "zzz": Record("b", 2)})
    resp = await authed.get("/v1/kv?prefix=app/", headers=bearer("appread"))
    assert resp.status == 200
    assert [i["key"] for i in (await resp.json())["items"]] == ["app/1"]
    assert (await authed.get("/v1/kv?prefix=app%2Fsub", headers=bearer("appread"))).status == 200
    for query in ("", "?prefix=", "?prefix=ap", "?limit=5"):
        assert (await authed.get("/v1/kv" + query, headers=bearer("appread"))).status == 403, query
    assert (await authed.get("/v1/kv", headers=bearer("reader"))).status == 200


async def test_a_batch_is_refused_whole_if_any_key_is_out_of_scope(
    authed: Client, service: FakeService
) -> None:
    inside = {"op": "put", "key": "app/a", "value": "1"}
    outside = {"op": "put", "key": "b", "value": "2"}
    resp = await authed.post("/v1/batch", json={"ops": [inside, outside]}, headers=bearer("app"))
    assert resp.status == 403
    doc = await resp.json()
    assert doc["keys"] == ["b"]
    assert doc["code"] == "permission_denied"
    assert "app/a" not in service.data
    assert "b" not in service.data
    assert not [c for c in service.calls if c[0] == "batch"]
    resp = await authed.post("/v1/batch", json={"ops": [inside]}, headers=bearer("app"))
    assert resp.status == 200
    assert service.data["app/a"].value == "1"
    # Bad input from an authenticated scoped caller is still the usual 400.
    resp = await authed.post("/v1/batch", json={"ops": "x"}, headers=bearer("app"))
    assert resp.status == 400


async def test_scoped_tokens_never_reach_admin_but_see_the_cluster(authed: Client) -> None:
    assert (await authed.get("/v1/cluster", headers=bearer("appread"))).status == 200
    assert (await authed.get("/v1/admin/partitions", headers=bearer("app"))).status == 403


async def test_the_token_is_never_in_responses_logs_or_metrics(
    authed: Client, service: FakeService, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secrets = [*TOKENS.values()]
    bodies: list[str] = []
    for name in TOKENS:
        for method, path in (("GET", "/v1/kv/k"), ("PUT", "/v1/admin/map"), ("GET", "/v1/kv")):
            resp = await authed.request(method, path, headers=bearer(name), json={})
            bodies.append(await resp.text())
            bodies.append(str(dict(resp.headers)))
    service.fail_with = RuntimeError("boom")  # an unhandled error is logged with the request
    resp = await authed.get("/v1/kv/k", headers=bearer("admin"))
    assert resp.status == 500
    bodies.append(await resp.text())
    service.fail_with = errors.Internal("internal")
    await authed.get("/v1/kv/k", headers=bearer("admin"))
    bodies.append(await (await authed.get("/metrics")).text())
    logs = "\n".join(r.getMessage() + str(r.exc_info or "") for r in caplog.records)
    assert caplog.records, "expected the error paths to log something"
    for secret in secrets:
        assert secret not in logs
        assert tokens.hash_token(secret) not in logs
        for text in bodies:
            assert secret not in text
            assert tokens.hash_token(secret) not in text


async def test_auth_off_is_todays_behaviour(client: Client) -> None:
    assert (await client.put("/v1/kv/k", json={"value": "v"})).status == 200
    assert (await client.get("/v1/admin/partitions")).status == 200
