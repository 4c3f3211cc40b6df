"""``NodeHttp``: every outcome becomes a body or the right domain error."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from kvnode.client import NodeHttp
from kvnode.core import errors

from tests.unit.client.test_client import closed_port_url

ServerFactory = Callable[[web.Application], Awaitable[TestServer]]


class Script:
    """One route per behaviour; counts what reached the server."""

    def __init__(self) -> None:
        self.hits: dict[str, int] = {}

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{name}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self.hits[name] = self.hits.get(name, 0) + 1
        if name == "ok":
            return web.json_response(
                {
                    "echo": await request.json() if request.can_read_body else None,
                    "q": dict(request.query),
                },
                headers={"X-Test": "1"},
            )
        if name == "text":
            return web.Response(text="plain words")
        if name == "proxy502":
            return web.Response(
                status=502, text="<html>bad gateway</html>", headers={"Retry-After": "3"}
            )
        if name == "readyz":
            return web.json_response({"ready": False, "why": "electing"}, status=503)
        if name == "notleader":
            return web.json_response(
                {"code": "not_leader", "message": "x", "leader": "n2"}, status=421
            )
        if name == "weird":
            return web.json_response({"code": "brand_new", "message": "?"}, status=418)
        if name == "hang":
            await asyncio.sleep(3600)
        if name == "drop":
            assert request.transport is not None
            request.transport.abort()
            return web.Response()
        return web.json_response({"code": "no_route", "message": name}, status=404)


@pytest.fixture
async def server(aiohttp_server: ServerFactory) -> tuple[Script, str]:
    script = Script()
    srv = await aiohttp_server(script.app())
    return script, f"http://127.0.0.1:{srv.port}"


@pytest.fixture
async def http() -> NodeHttp:
    client = NodeHttp()
    yield client  # type: ignore[misc]
    await client.close()


async def test_success_returns_status_body_headers(
    server: tuple[Script, str], http: NodeHttp
) -> None:
    _, url = server
    status, body, headers = await http.call(
        url, "POST", "/ok", params={"a": "b c"}, json_body={"x": 1}, timeout=2
    )
    assert status == 200
    assert body == {"echo": {"x": 1}, "q": {"a": "b c"}}
    assert headers["X-Test"] == "1"


async def test_non_json_success_is_wrapped(server: tuple[Script, str], http: NodeHttp) -> None:
    _, url = server
    _, body, _ = await http.call(url, "GET", "/text", timeout=2)
    assert body == {"text": "plain words"}


@pytest.mark.parametrize(
    ("path", "exc_type", "detail"),
    [
        ("/notleader", errors.NotLeader, ("leader", "n2")),
        ("/proxy502", errors.Unavailable, ("retry_after", 3.0)),
        ("/readyz", errors.Unavailable, ("why", "electing")),
        ("/weird", errors.Internal, None),
        ("/missing", errors.Internal, None),
    ],
)
async def test_error_answers_become_domain_errors(
    server: tuple[Script, str], http: NodeHttp, path: str, exc_type: type, detail: tuple | None
) -> None:
    _, url = server
    with pytest.raises(exc_type) as info:
        await http.call(url, "GET", path, timeout=2)
    assert type(info.value) is exc_type
    if detail is not None:
        assert info.value.details[detail[0]] == detail[1]


async def test_connect_refused_is_unavailable_connect(http: NodeHttp) -> None:
    url = closed_port_url()
    with pytest.raises(errors.Unavailable) as info:
        await http.call(url, "PUT", "/ok", json_body={}, timeout=2)
    assert info.value.details == {"reason": "connect", "node": url}


@pytest.mark.parametrize("method", ["PUT", "POST", "DELETE"])
async def test_write_timeout_is_unknown_outcome(
    server: tuple[Script, str], http: NodeHttp, method: str
) -> None:
    _, url = server
    with pytest.raises(errors.UnknownOutcome):
        await http.call(url, method, "/hang", json_body={}, timeout=0.2)


async def test_read_timeout_is_unavailable(server: tuple[Script, str], http: NodeHttp) -> None:
    _, url = server
    with pytest.raises(errors.Unavailable) as info:
        await http.call(url, "GET", "/hang", timeout=0.2)
    assert info.value.details["reason"] == "timeout"


@pytest.mark.parametrize("method", ["PUT", "DELETE", "POST"])
async def test_dropped_write_on_reused_connection_is_not_resent(
    server: tuple[Script, str], http: NodeHttp, method: str
) -> None:
    """aiohttp would silently resend a PUT/DELETE on a dropped keep-alive connection."""
    script, url = server
    await http.call(url, "GET", "/ok", timeout=2)  # leaves a pooled keep-alive connection
    with pytest.raises(errors.UnknownOutcome):
        await http.call(url, method, "/drop", json_body={}, timeout=2)
    assert script.hits["drop"] == 1


async def test_shared_session_is_not_closed(server: tuple[Script, str]) -> None:
    _, url = server
    async with aiohttp.ClientSession() as session:
        http = NodeHttp(session)
        await http.call(url, "GET", "/ok", timeout=2)
        await http.close()
        assert not session.closed


async def test_a_failed_connect_forgets_the_cached_address(http: NodeHttp) -> None:
    """A pod recreated under the same name gets a new IP: after a connect failure the name is
    resolved again rather than reused from the DNS cache (aiohttp keeps it 10 s)."""
    port = int(closed_port_url().rsplit(":", 1)[1])
    url = f"http://localhost:{port}"
    with pytest.raises(errors.Unavailable):
        await http.call(url, "GET", "/ok", timeout=2)
    session = http._get_session()
    connector = session.connector
    assert isinstance(connector, aiohttp.TCPConnector)
    assert ("localhost", port) not in connector._cached_hosts
