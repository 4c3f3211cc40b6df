"""The client over TLS against a real HTTPS listener (``kvnode.auth.tlsfiles``), real
certificates (``kvnode.localtls``): verified by default, and a certificate that does not verify
(wrong CA, wrong host name) is a ``TlsVerifyFailed`` naming the endpoint, raised at once."""

from __future__ import annotations

import contextlib
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from kvnode import localtls
from kvnode.auth import tlsfiles
from kvnode.client import Client, NodeHttp
from kvnode.client.client import client_tls
from kvnode.core import errors

from tests.support.addresses import claim_ports

PORT = 7300


def pair(where: Path, ca: localtls.Pem, hosts: list[str]) -> tlsfiles.TlsPaths:
    pem = localtls.issue(ca, name="node-0", hosts=hosts)
    (where / "tls.crt").write_bytes(pem.cert)
    (where / "tls.key").write_bytes(pem.key)
    (where / "ca.crt").write_bytes(ca.cert)
    return tlsfiles.TlsPaths(
        cert_file=str(where / "tls.crt"),
        key_file=str(where / "tls.key"),
        ca_file=str(where / "ca.crt"),
    )


@contextlib.asynccontextmanager
async def listener(
    where: Path, ca: localtls.Pem, *, names: list[str] | None = None
) -> AsyncIterator[tuple[str, tlsfiles.TlsPaths]]:
    """An HTTPS listener on a claimed address; its certificate names that address (or
    ``names``). Yields (url, its TLS files)."""
    claim = claim_ports([PORT])
    try:
        paths = pair(where, ca, names or [claim.host])
        app = web.Application()
        body = {"key": "k", "value": "v", "version": 1}

        async def get(_request: web.Request) -> web.Response:
            return web.json_response(body)

        app.router.add_get("/v1/kv/{key}", get)
        runner = web.AppRunner(app)
        await runner.setup()
        tls = tlsfiles.ReloadingTls(paths)
        try:
            await web.TCPSite(runner, claim.host, PORT, ssl_context=tls.listening).start()
            yield f"https://{claim.host}:{PORT}", paths
        finally:
            await runner.cleanup()
    finally:
        claim.release()


@pytest.fixture
async def good(tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    """A listener whose certificate names its address; (url, CA file)."""
    async with listener(tmp_path, localtls.make_ca()) as (url, paths):
        yield url, paths.ca_file


async def test_https_with_the_right_ca_works(good: tuple[str, str]) -> None:
    url, ca_file = good
    async with Client([url], ca_file=ca_file, direct=False) as client:
        got = await client.get("k")
        assert got is not None
        assert got.value == "v"


async def test_wrong_ca_is_refused_at_once_naming_the_endpoint(
    good: tuple[str, str], tmp_path: Path
) -> None:
    url, _ = good
    other = tmp_path / "other.crt"
    other.write_bytes(localtls.make_ca("other").cert)
    started = time.monotonic()
    async with Client([url], ca_file=str(other), direct=False, timeout=5) as client:
        with pytest.raises(errors.TlsVerifyFailed, match="not accepted") as info:
            await client.get("k")
    assert time.monotonic() - started < 3
    assert url in str(info.value)
    assert info.value.details["node"] == url


async def test_wrong_host_name_is_refused_naming_the_host(tmp_path: Path) -> None:
    names = ["elsewhere.example"]  # not the address the client calls
    async with listener(tmp_path, localtls.make_ca(), names=names) as (url, paths):
        async with Client([url], ca_file=paths.ca_file, direct=False, timeout=5) as client:
            with pytest.raises(errors.TlsVerifyFailed) as info:
                await client.get("k")
        message = str(info.value)
        assert "mismatch" in message
        assert url.split("://")[1].rsplit(":", 1)[0] in message  # the host it must name
        # NodeHttp (the node's own transport) says the same
        http = NodeHttp(tls=client_tls([url], paths.ca_file))
        try:
            with pytest.raises(errors.TlsVerifyFailed):
                await http.call(url, "GET", "/v1/kv/k", timeout=3)
        finally:
            await http.close()


def test_client_tls_choice(tmp_path: Path) -> None:
    assert client_tls(["http://127.0.0.1:7000"], None) is None
    system = client_tls(["https://db.example:7000"], None)
    assert system is not None
    assert system.verify_mode == ssl.CERT_REQUIRED
    assert system.check_hostname
    given = ssl.create_default_context()
    assert client_tls(["http://x:1"], given) is given
    bad = tmp_path / "bad.pem"
    bad.write_text("no certificate here\n")
    with pytest.raises(errors.InvalidArgument, match=r"bad\.pem"):
        client_tls(["https://x:1"], str(bad))


async def test_tls_to_a_plain_http_port_says_it_was_tls(tmp_path: Path) -> None:
    """A node not (yet) serving TLS: retriable Unavailable, but saying the handshake failed."""
    claim = claim_ports([PORT])
    app = web.Application()
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, claim.host, PORT).start()
        ca = tmp_path / "ca.crt"
        ca.write_bytes(localtls.make_ca().cert)
        http = NodeHttp(tls=client_tls([], str(ca)))
        try:
            with pytest.raises(errors.Unavailable, match="TLS handshake") as info:
                await http.call(f"http://{claim.host}:{PORT}", "GET", "/v1/kv/k", timeout=3)
        finally:
            await http.close()
        assert info.value.details["reason"] == "tls"
    finally:
        await runner.cleanup()
        claim.release()
