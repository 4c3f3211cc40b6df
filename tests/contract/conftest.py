"""One real 3-node local cluster shared by the contract tests (``kvnode.local.LocalCluster``, as
tests/integration/conftest.py uses): real node processes, real LevelDB, real Raft groups.

It lives on its own claimed loopback address with fixed ports below the ephemeral range
(``tests.support.addresses``), so it cannot collide with the integration tests' clusters or a
developer's ``ringkv local`` cluster. Every
node process is killed at teardown, pass or fail; on failure the nodes' logs are printed.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator

import pytest
from kvnode.local import LocalCluster
from kvnode.settings import PREFIX, NodeSettings

from tests.support.clusters import FAST_RAFT, Clusters

NODES = 3
PARTITIONS = 8
# The production Raft timings (no failover is tested here; fewer spurious elections on a busy
# CI machine): the node's own defaults replace the fast test timings Clusters applies.
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(NodeSettings)}
NODE_ENV = {
    var: str(_DEFAULTS[var.removeprefix(PREFIX).lower()])
    for var in FAST_RAFT
    if var.removeprefix(PREFIX).lower() != "log_level"
}


@pytest.fixture(scope="session")
def contract_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    clusters = Clusters(str(tmp_path_factory.mktemp("contract-cluster")))
    # replication = nodes: every node holds every partition, so `DELETE
    # /v1/admin/partitions/{p}` is always refused (412) and cannot destroy data.
    cluster = clusters.create(nodes=NODES, partitions=PARTITIONS, replication=NODES, env=NODE_ENV)
    failed = False
    try:
        asyncio.run(cluster.wait_ready(timeout=90))
        yield cluster
    except BaseException:
        failed = True
        raise
    finally:
        clusters.teardown(show_logs=failed)


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
