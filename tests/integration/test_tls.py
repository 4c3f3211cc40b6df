"""Issue 12, TLS and Raft encryption on real node processes, real certificates, real sockets.

One secured 3-node cluster (TLS + auth + Raft password; replication 2, so some nodes hold no
replica of a partition and must forward to its leader over TLS): put / get / strong get through
the smart client and through every node; a client with the wrong CA is refused with an error
that says so and names the endpoint; a plain-HTTP request to a TLS port gets nothing; backup and
restore (upload with the bearer token) under TLS + auth; certificate rotation seen by new
connections without a restart (run last: it changes the cluster's CA bundle). Separately: a
node restarted with another Raft password stays out while the others serve, and catches up
once it has the right one; a partial or broken TLS configuration exits 78 naming the problem.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from kvnode import localauth, localbackup, localtls
from kvnode.client import Client
from kvnode.core import errors
from kvnode.core.hashing import partition_of
from kvnode.local import LocalCluster

from tests.support.addresses import claim_address
from tests.support.clusters import Clusters

pytestmark = pytest.mark.integration

RELOAD_S = 0.3


class Secured:
    def __init__(self, cluster: LocalCluster, root: Path) -> None:
        self.cluster = cluster
        self.root = root
        self.admin = admin_token(root)

    @property
    def ca_file(self) -> str:
        assert self.cluster.ca_file is not None
        return self.cluster.ca_file

    def client(self, **kw: Any) -> Client:
        kw.setdefault("ca_file", self.ca_file)
        return Client(self.cluster.endpoints, token=self.admin, **kw)


def admin_token(root: Path) -> str:
    return Path(localauth.ensure_auth_files(str(root)).admin_token_file).read_text().strip()


def secure_env(root: Path) -> dict[str, str]:
    return {
        **localauth.ensure_auth_files(str(root)).node_env(),
        **localtls.ensure_tls_files(str(root)).cluster_env(),
        "KVNODE_TLS_RELOAD_S": str(RELOAD_S),
    }


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    root = tmp_path_factory.mktemp("tls")
    clusters = Clusters(str(root))
    failed = False
    try:
        cluster = clusters.create(nodes=3, partitions=4, replication=2, env=secure_env(root))
        asyncio.run(cluster.wait_ready(timeout=90))
        yield Secured(cluster, root)
    except BaseException:
        failed = True
        raise
    finally:
        clusters.teardown(show_logs=failed)


def peer_serial(url: str, context: ssl.SSLContext) -> int:
    """The serial number of the certificate a new connection to ``url`` is shown."""
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    with (
        socket.create_connection((host, int(port)), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=host) as conn,
    ):
        der = conn.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


async def test_endpoints_are_https_and_the_cluster_serves(secured: Secured) -> None:
    assert all(url.startswith("https://") for url in secured.cluster.endpoints)
    async with secured.client() as client:
        versions = {f"k{i}": await client.put(f"k{i}", f"v{i}") for i in range(20)}
        for key, version in versions.items():
            got = await client.get(key)  # strong: through the leader over TLS
            assert got is not None
            assert (got.value, got.version) == (f"v{key[1:]}", version)
            eventual = await client.get(key, consistency="eventual")
            assert eventual is not None
            assert eventual.value == f"v{key[1:]}"
        seen = [e async for e in client.scan("k")]  # fan-out by one node to the others
        assert len(seen) == 20


async def test_concurrent_writes_group_commit_under_raft_encryption(secured: Secured) -> None:
    """64 writes at once share group-commit entries, each entry crossing encrypted Raft links;
    every one is acknowledged once and reads back."""
    async with secured.client(timeout=30, attempt_timeout=15) as client:  # a busy machine
        versions = await asyncio.gather(*(client.put(f"gc/{i}", str(i)) for i in range(64)))
        assert all(v > 0 for v in versions)
        for i in range(64):
            got = await client.get(f"gc/{i}")
            assert got is not None
            assert got.value == str(i)


async def test_every_node_forwards_to_leaders_over_tls(secured: Secured) -> None:
    """Through each node in turn without direct routing: with replication 2 of 3, a node that
    holds no replica (or a follower) forwards over TLS with the cluster credential."""
    for url in secured.cluster.endpoints:
        client = Client([url], direct=False, token=secured.admin, ca_file=secured.ca_file)
        async with client:
            for i in range(8):
                version = await client.put(f"fw/{i}", url)
                got = await client.get(f"fw/{i}")
                assert got is not None
                assert (got.value, got.version) == (url, version)


async def test_watch_streams_over_tls(secured: Secured) -> None:
    async with secured.client() as client:
        watcher = client.watch("w/")

        async def first() -> Any:
            async for event in watcher:
                return event
            return None

        task = asyncio.create_task(first())
        deadline = time.monotonic() + 20
        while not task.done():
            assert time.monotonic() < deadline, "no watch event over TLS"
            await client.put("w/x", "1")
            await asyncio.wait({task}, timeout=0.5)
        event = task.result()
        assert (event.key, event.value) == ("w/x", "1")
        await watcher.aclose()


async def test_a_client_with_the_wrong_ca_is_refused_clearly(secured: Secured) -> None:
    other = secured.root / "other-ca.crt"
    other.write_bytes(localtls.make_ca("not the cluster's CA").cert)
    url = secured.cluster.endpoints[0]
    started = time.monotonic()
    async with Client([url], ca_file=str(other), token=secured.admin, timeout=20) as client:
        with pytest.raises(errors.TlsVerifyFailed) as info:
            await client.put("k0", "x")
    assert time.monotonic() - started < 10, "a certificate failure must not be retried"
    message = str(info.value)
    assert url in message
    assert "certificate" in message
    assert "unable to get local issuer certificate" in message
    # Without --cacert the system trust store does not know the local CA either.
    async with Client([url], token=secured.admin, timeout=5) as client:
        with pytest.raises(errors.TlsVerifyFailed):
            await client.get("k0")


def test_the_cli_says_which_endpoint_failed_verification(secured: Secured) -> None:
    url = secured.cluster.endpoints[1]
    other = secured.root / "cli-other-ca.crt"
    other.write_bytes(localtls.make_ca("another CA").cert)
    env = {**os.environ, "RINGKV_ENDPOINTS": url, "RINGKV_TOKEN": secured.admin}
    cli = [sys.executable, "-c", "from kvnode.cli import main; main()"]
    bad = subprocess.run([*cli, "--cacert", str(other), "get", "k1"], env=env,
                         capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert bad.returncode == 1
    assert '"code": "tls_verify_failed"' in bad.stderr
    assert url in bad.stderr
    good = subprocess.run([*cli, "get", "k1"], env={**env, "RINGKV_CACERT": secured.ca_file},
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert good.returncode == 0, good.stderr
    assert '"value": "v1"' in good.stdout


async def test_plain_http_to_a_tls_port_gets_no_answer(secured: Secured) -> None:
    plain = secured.cluster.pmap.nodes[0].http_url  # http://host:port
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for path in ("/healthz", "/metrics", "/v1/kv/k0"):
            with pytest.raises(aiohttp.ClientError):
                async with session.get(plain + path) as resp:
                    pytest.fail(f"plain HTTP {path} answered {resp.status}")


async def test_backup_and_restore_under_tls_and_auth(secured: Secured, tmp_path: Path) -> None:
    async with secured.client() as client:
        versions = {f"bk/{i}": await client.put(f"bk/{i}", str(i)) for i in range(30)}
    dest = str(tmp_path / "backup")
    summary = await localbackup.backup(dest, base_dir=secured.cluster.base_dir)
    assert summary["keys"] >= 30
    clusters = Clusters(str(tmp_path / "restored"))
    root = tmp_path / "restored-secrets"
    root.mkdir()
    try:
        fresh = clusters.create(
            nodes=3, partitions=4, replication=2, env=secure_env(root), start=False
        )
        # every upload carries the fresh cluster's credential: without it the nodes answer 401
        await localbackup.restore_into(fresh, dest, timeout=90)
        admin = await asyncio.to_thread(admin_token, root)
        async with Client(fresh.endpoints, token=admin, ca_file=fresh.ca_file) as client:
            for key, version in versions.items():
                got = await client.get(key)
                assert got is not None
                assert (got.value, got.version) == (key.split("/")[1], version)
    finally:
        clusters.teardown()


async def test_rotated_certificate_is_served_to_new_connections_without_restart(
    secured: Secured,
) -> None:
    cluster = secured.cluster
    async with secured.client() as c:
        leader = (await c.cluster())["leaders"]["0"]
    node = cluster.pmap.node(leader)  # rotated: the leader of partition 0
    url = localtls.url(node.http_url, cluster.env)
    pids = {nid: cluster.pid(nid) for nid in cluster.node_ids}
    old_ca_pem = await asyncio.to_thread(Path(secured.ca_file).read_bytes)
    old_only = ssl.create_default_context(cadata=old_ca_pem.decode())
    old_serial = peer_serial(url, old_only)

    new_ca = localtls.make_ca("rotated CA")
    new_pem = localtls.issue(new_ca, name=node.node_id, hosts=[node.host, "localhost"])
    # The bundle first (every node then trusts both CAs), then the node's new pair.
    localtls.write_file(secured.ca_file, old_ca_pem + new_ca.cert, private=False)
    cert_file, key_file = localtls.TlsFiles(os.path.dirname(secured.ca_file)).cert_paths(
        node.node_id
    )
    localtls.write_file(key_file, new_pem.key, private=True)
    localtls.write_file(cert_file, new_pem.cert, private=False)
    new_serial = x509.load_pem_x509_certificate(new_pem.cert).serial_number

    new_only = ssl.create_default_context(cadata=new_ca.cert.decode())
    deadline = time.monotonic() + 20
    while True:
        try:
            if await asyncio.to_thread(peer_serial, url, new_only) == new_serial:
                break
        except ssl.SSLCertVerificationError:
            pass  # still the old certificate
        assert time.monotonic() < deadline, f"{node.node_id} still presents the old certificate"
        await asyncio.sleep(0.2)
    assert old_serial != new_serial
    with pytest.raises(ssl.SSLCertVerificationError):
        await asyncio.to_thread(peer_serial, url, old_only)  # the old chain is gone for new ones
    assert {nid: cluster.pid(nid) for nid in cluster.node_ids} == pids  # nobody restarted
    # The other nodes verify the new certificate with their reloaded bundle: writes to
    # partition 0 sent through them (forwarded to its leader on a new connection: the reloaded
    # client context is a new pool key) succeed.
    keys = [k for k in (f"rot/{i}" for i in range(200)) if partition_of(k, 4) == 0][:4]
    for entry in cluster.endpoints:
        if entry == url:
            continue
        async with Client([entry], direct=False, token=secured.admin, ca_file=secured.ca_file) as c:
            for key in keys:
                version = await c.put(key, entry)
                got = await c.get(key)
                assert got is not None
                assert (got.value, got.version) == (entry, version)


# -- Raft password --------------------------------------------------------------------------
async def eventual_on(url: str, key: str) -> str | None:
    """``key`` as node ``url`` itself holds it (no forwarding); None if it has none or does not
    answer (yet)."""
    timeout = aiohttp.ClientTimeout(total=3)
    params, headers = {"consistency": "eventual"}, {"X-Ringkv-Forward": "0"}
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(f"{url}/v1/kv/{key}", params=params, headers=headers) as resp,
        ):
            if resp.status != 200:
                return None
            return str((await resp.json())["value"])
    except (aiohttp.ClientError, TimeoutError):
        return None


async def test_a_node_with_another_raft_password_stays_out(make_cluster, tmp_path: Path) -> None:
    right, wrong = tmp_path / "raft-password", tmp_path / "wrong-password"
    right.write_text("the cluster's password\n")
    wrong.write_text("another password\n")
    handle = make_cluster(
        nodes=3, partitions=2, replication=3, env={localtls.RAFT_PASSWORD_ENV: str(right)}
    )
    await handle.wait_ready(timeout=60)
    cluster = handle.cluster
    outsider = cluster.node_ids[2]
    outsider_url = cluster.pmap.node(outsider).http_url
    majority = [cluster.pmap.node(n).http_url for n in cluster.node_ids[:2]]
    async with Client(majority, timeout=20, attempt_timeout=8) as client:
        await client.put("before", "1")
        deadline = time.monotonic() + 30
        while await eventual_on(outsider_url, "before") != "1":  # applied there too
            assert time.monotonic() < deadline, cluster.log_tail(outsider)
            await asyncio.sleep(0.2)
        cluster.stop_node(outsider)
        cluster.env[localtls.RAFT_PASSWORD_ENV] = str(wrong)
        try:
            cluster.start_node(outsider)
        finally:
            cluster.env[localtls.RAFT_PASSWORD_ENV] = str(right)
        # The outsider runs (HTTP answers) but cannot talk Raft with the others: for several
        # election timeouts, writes keep succeeding through the two others and none reaches it.
        deadline = time.monotonic() + 60
        while await eventual_on(outsider_url, "before") != "1":  # up, its data intact
            assert cluster.is_running(outsider), cluster.log_tail(outsider)
            assert time.monotonic() < deadline, "the outsider never came up"
            await asyncio.sleep(0.3)
        for i in range(15):
            await client.put(f"during/{i}", str(i))
            await asyncio.sleep(0.3)
        for i in range(15):
            assert await eventual_on(outsider_url, f"during/{i}") is None
        assert cluster.is_running(outsider)
        leaders = (await client.cluster())["leaders"]
        assert outsider not in leaders.values()
        # With the right password again it catches up: nothing was corrupted on either side.
        cluster.stop_node(outsider)
        cluster.start_node(outsider)
        deadline = time.monotonic() + 60
        while await eventual_on(outsider_url, "during/14") != "14":
            assert time.monotonic() < deadline, cluster.log_tail(outsider)
            await asyncio.sleep(0.3)
        for i in range(15):
            got = await client.get(f"during/{i}")
            assert got is not None
            assert got.value == str(i)


# -- configuration errors --------------------------------------------------------------------
def start_node(tmp_path: Path, extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    claim = claim_address(partitions=1)
    try:
        env = {
            **os.environ,
            "KVNODE_NODE_ID": "node-0",
            "KVNODE_DATA_DIR": str(tmp_path / "data"),
            "KVNODE_HOST": claim.host,
            "KVNODE_BIND_HOST": claim.host,
            "KVNODE_HTTP_PORT": str(claim.base_port),
            "KVNODE_RAFT_PORT_BASE": str(claim.base_port + 10000),
            **extra,
        }
        return subprocess.run([sys.executable, "-m", "kvnode"], env=env, capture_output=True,
                              text=True, timeout=60, check=False)  # fmt: skip
    finally:
        claim.release()


def test_partial_or_broken_tls_configuration_exits_78(tmp_path: Path) -> None:
    files = localtls.ensure_tls_files(str(tmp_path))
    cert = localtls.node_env(files.cluster_env(), "node-0", host="127.0.0.1")
    partial = start_node(tmp_path, {localtls.CERT_ENV: cert[localtls.CERT_ENV]})
    assert partial.returncode == 78, partial.stderr
    assert "KVNODE_TLS_KEY_FILE" in partial.stderr
    assert "KVNODE_TLS_CA_FILE" in partial.stderr
    broken_ca = tmp_path / "broken-ca.crt"
    broken_ca.write_text("-----BEGIN CERTIFICATE-----\nnonsense\n-----END CERTIFICATE-----\n")
    broken = start_node(tmp_path, {**cert, localtls.CA_ENV: str(broken_ca)})
    assert broken.returncode == 78, broken.stderr
    assert f"TLS CA file {broken_ca}" in broken.stderr
    no_password = start_node(
        tmp_path,
        {**cert, localtls.CA_ENV: files.ca_file, localtls.RAFT_PASSWORD_ENV: "/nonexistent/pw"},
    )
    assert no_password.returncode == 78, no_password.stderr
    assert "Raft password file /nonexistent/pw is unreadable" in no_password.stderr
