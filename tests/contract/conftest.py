"""One real 3-node local cluster shared by the contract tests (``kvnode.local.LocalCluster``, as
tests/integration/conftest.py uses): real node processes, real LevelDB, real Raft groups.

It lives on its own loopback address with fixed ports below the ephemeral range, so it cannot
collide with the integration tests' clusters or a developer's ``ringkv local`` cluster. Every
node process is killed at teardown, pass or fail; on failure the nodes' logs are printed.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest
from kvnode.local import LocalCluster

HOST = "127.0.211.7"
BASE_PORT = 17000  # HTTP 17000-17002, Raft 27000+p, 28000+p, 29000+p
NODES = 3
PARTITIONS = 8
# The production Raft timings (no failover is tested here; fewer spurious elections on a busy
# CI machine).
NODE_ENV = {"KVNODE_LOG_LEVEL": "INFO"}


def _taken(ports: list[int]) -> list[int]:
    taken = []
    for port in ports:
        with socket.socket() as s:
            # as the nodes bind: connections of a previous run in TIME-WAIT do not count
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((HOST, port))
            except OSError:
                taken.append(port)
    return taken


@pytest.fixture(scope="session")
def contract_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    ports = [BASE_PORT + i for i in range(NODES)]
    ports += [BASE_PORT + 10000 + 1000 * i + p for i in range(NODES) for p in range(PARTITIONS)]
    taken = _taken(ports)
    if taken:
        raise RuntimeError(f"contract test cluster: ports {taken} on {HOST} are already in use")
    cluster = LocalCluster.create(
        str(tmp_path_factory.mktemp("contract-cluster")),
        nodes=NODES,
        partitions=PARTITIONS,
        # replication = nodes: every node holds every partition, so `DELETE
        # /v1/admin/partitions/{p}` is always refused (412) and cannot destroy data.
        replication=NODES,
        host=HOST,
        base_port=BASE_PORT,
        env=NODE_ENV,
    )
    cluster.start_all()
    failed = False
    try:
        asyncio.run(cluster.wait_ready(timeout=90))
        yield cluster
    except BaseException:
        failed = True
        raise
    finally:
        if failed:
            print(cluster.logs_report(lines=60))
        cluster.stop_all(kill=True)


@pytest.fixture
def healthy_cluster(
    contract_cluster: LocalCluster, request: pytest.FixtureRequest
) -> Iterator[LocalCluster]:
    """The shared cluster, ready; its logs are printed when the test using it fails."""
    asyncio.run(contract_cluster.wait_ready(timeout=60))
    yield contract_cluster
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print(contract_cluster.logs_report(lines=60))


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):  # type: ignore[no-untyped-def]
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
