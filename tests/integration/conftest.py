"""Real multi-process clusters for integration tests.

Every cluster runs real ``python -m kvnode`` processes with real LevelDB files and real Raft
groups, on a loopback address of its own with fixed ports below the ephemeral range (see
``tests.support.addresses``). At teardown, pass or fail, every node process of the test's
clusters is SIGKILLed with its process group, including nodes another process started; when a
test fails, the nodes' logs are attached to its report.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.clusters import ClusterHandle, Clusters


@pytest.fixture
def make_cluster(tmp_path, request) -> Iterator:
    clusters = Clusters(str(tmp_path))
    request.node.ringkv_clusters = clusters

    def make(
        *,
        nodes: int = 3,
        partitions: int = 8,
        replication: int = 3,
        env: dict | None = None,
        reserve_nodes: int = 0,  # kept for callers; every address has room for 10 nodes
    ) -> ClusterHandle:
        return ClusterHandle(
            clusters.create(nodes=nodes, partitions=partitions, replication=replication, env=env)
        )

    yield make
    clusters.teardown()


@pytest.fixture
async def cluster(make_cluster) -> ClusterHandle:
    handle = make_cluster()
    await handle.wait_ready(timeout=60)
    return handle


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
    clusters = getattr(item, "ringkv_clusters", None)
    if rep.failed and rep.when == "call" and clusters is not None:
        for cluster, _ in clusters.made:
            rep.sections.append((f"node logs {cluster.base_dir}", cluster.logs_report(lines=60)))
