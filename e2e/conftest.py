"""Pytest fixtures for the e2e suite: one local cluster per session, a namespace per test.

`./dev test` runs `e2e/setup.sh` (etcd + Kubernetes binaries) and then
`pytest -c pyproject.toml e2e -m e2e`. The harness lives in e2e/kvharness, outside the installed
packages, hence the sys.path entry. When the binaries are missing the cluster fixture fails (not
skips) in CI (`CI` set) so a broken setup step is seen, and skips with a reason elsewhere.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import prereq
from kvharness import procs
from kvharness.cluster import LocalCluster
from opsupport import Kvc, LoadProcess

log = logging.getLogger(__name__)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Remember each phase's report on the item so fixtures can dump logs on failure."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A running control plane + process kubelet, shared by the session's e2e tests."""
    prereq.require_control_plane()
    run_dir = tmp_path_factory.mktemp("cluster")
    local = LocalCluster(run_dir)
    seconds = local.start()
    log.info("cluster up in %.1fs, KUBECONFIG=%s", seconds, local.kubeconfig)
    yield local
    local.stop()


@pytest.fixture
def namespace(cluster: LocalCluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace; logs are dumped if the test failed, then the namespace is deleted."""
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    # ServiceAccount admission refuses pods until the controller manager has created the
    # namespace's `default` account (as on any cluster; usually within a few ms).
    procs.wait_until(
        lambda: cluster.kubectl("get", "serviceaccount", "default", "-n", name, check=False)
        .returncode == 0,
        timeout=30, what=f"ServiceAccount {name}/default", on_timeout=cluster.dump_logs,
    )  # fmt: skip
    yield name
    rep = getattr(request.node, "rep_call", None)
    if rep is None or rep.failed:
        cluster.dump_logs()
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
    cluster.assert_healthy()


def helm_binary() -> Path:
    """The helm built by e2e/build-helm.sh; missing fails in CI (setup.sh builds it), skips
    elsewhere with the command that builds it."""
    version = (Path(__file__).parent / "helmbin" / "HELM_VERSION").read_text().strip()
    cache = Path(os.environ.get("RINGKV_CACHE", Path.home() / ".cache" / "ringkv"))
    path = cache / f"helm-{version}" / "bin" / "helm"
    if not path.exists():
        prereq.unavailable(f"no helm at {path} (run e2e/setup.sh or e2e/build-helm.sh)")
    return path


@pytest.fixture(scope="session")
def helm() -> Path:
    return helm_binary()


@pytest.fixture(scope="module")
def operator(cluster: LocalCluster, helm: Path) -> Iterator[str]:
    """The operator installed from charts/ringkv exactly as a user would (`helm install`,
    cluster-wide, image mapped by e2e/images.json), running as a pod under the chart's
    ServiceAccount and RBAC with in-cluster configuration. Yields its namespace; uninstalled
    after the module (the CRD stays, as with helm)."""
    ns = "ringkv-system"
    chart = Path(__file__).resolve().parent.parent / "charts" / "ringkv"
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    argv = [str(helm), "install", "ringkv", str(chart), "-n", ns, "--create-namespace"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env, check=False)
    assert done.returncode == 0, f"helm install failed:\n{done.stderr}{done.stdout}"
    try:
        rollout = cluster.kubectl("-n", ns, "rollout", "status", "deployment/ringkv-operator",
                                  "--timeout=120s", check=False, timeout=150)  # fmt: skip
        if rollout.returncode != 0:
            cluster.dump_logs()
            pytest.fail(f"operator did not become ready:\n{rollout.stdout}{rollout.stderr}")
        yield ns
    finally:
        argv = [str(helm), "uninstall", "ringkv", "-n", ns, "--wait", "--timeout", "60s"]
        subprocess.run(argv, capture_output=True, text=True, timeout=90, env=env, check=False)


@pytest.fixture
def scenario(
    cluster: LocalCluster, operator: str, namespace: str, tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[tuple[Kvc, LoadProcess]]:  # fmt: skip
    """A KVCluster handle and a client load process (``e2e/kvload.py``) for an operator test;
    the load is killed after the test, and on failure the cluster and the load's log are
    dumped."""
    kvc = Kvc(cluster, namespace)
    load = LoadProcess(cluster, namespace, tmp_path)
    yield kvc, load
    load.kill()
    rep = getattr(request.node, "rep_call", None)
    if rep is None or rep.failed:
        kvc.dump()
        log.error("kvload log:\n%s", procs.tail(tmp_path / "kvload.log", 60))
