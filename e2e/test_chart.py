"""The Helm chart charts/ringkv: `helm lint`, golden `helm template` output, the CRD symlink,
and least-privilege RBAC checked on the rendered manifests and on a real apiserver.

Golden files live in e2e/golden/. After an intended chart change, regenerate them with
    RINGKV_UPDATE_GOLDEN=1 ./dev e2e e2e/test_chart.py
and review the diff. These tests need the helm binary that e2e/setup.sh builds, so they run in
the e2e stage (missing helm fails in CI, skips elsewhere, see conftest.helm_binary).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kvharness.cluster import LocalCluster

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "ringkv"
GOLDEN = Path(__file__).resolve().parent / "golden"
RENDERS = {
    "default": [],
    "custom": ["-f", str(GOLDEN / "values-custom.yaml")],
}


def run_helm(helm: Path, *args: str, kubeconfig: Path | None = None) -> str:
    env = {**os.environ, "HELM_CACHE_HOME": "/nonexistent-cache", "HOME": "/nonexistent-home"}
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    done = subprocess.run(
        [str(helm), *args], capture_output=True, text=True, timeout=120, check=False, env=env
    )
    assert done.returncode == 0, f"helm {' '.join(args)} failed:\n{done.stderr}{done.stdout}"
    return done.stdout


def render(helm: Path, name: str) -> str:
    return run_helm(helm, "template", "demo", str(CHART), "--namespace", "ringkv-system",
                    *RENDERS[name])  # fmt: skip


def docs(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def test_helm_is_the_pinned_version(helm: Path) -> None:
    version = (Path(__file__).parent / "helmbin" / "HELM_VERSION").read_text().strip()
    assert run_helm(helm, "version", "--short").startswith(version)


@pytest.mark.parametrize("name", sorted(RENDERS))
def test_helm_lint_is_clean(helm: Path, name: str) -> None:
    out = run_helm(helm, "lint", "--strict", str(CHART), *RENDERS[name])
    assert "1 chart(s) linted, 0 chart(s) failed" in out
    assert "[WARNING]" not in out
    assert "[ERROR]" not in out


@pytest.mark.parametrize("name", sorted(RENDERS))
def test_template_matches_golden(helm: Path, name: str) -> None:
    out = render(helm, name)
    golden = GOLDEN / f"chart-{name}.yaml"
    if os.environ.get("RINGKV_UPDATE_GOLDEN"):
        golden.write_text(out)
    assert golden.exists(), f"{golden} missing: run with RINGKV_UPDATE_GOLDEN=1"
    assert out == golden.read_text(), (
        f"helm template differs from {golden}; if intended, regenerate with "
        "RINGKV_UPDATE_GOLDEN=1 and review the diff"
    )


def test_chart_crd_is_the_repository_crd(helm: Path) -> None:
    """charts/ringkv/crds/ is a symlink to crds/: one source of truth, and helm follows it."""
    link = CHART / "crds" / "ringkv.io_kvclusters.yaml"
    assert link.is_symlink()
    assert os.readlink(link) == "../../../crds/ringkv.io_kvclusters.yaml"
    source = ROOT / "crds" / "ringkv.io_kvclusters.yaml"
    assert source.exists(), f"{source} missing: the chart would ship no CRD"
    backup = CHART / "crds" / "ringkv.io_kvclusterbackups.yaml"
    assert os.readlink(backup) == "../../../crds/ringkv.io_kvclusterbackups.yaml"
    shown = run_helm(helm, "show", "crds", str(CHART))
    for crd in (source, ROOT / "crds" / "ringkv.io_kvclusterbackups.yaml"):
        assert crd.read_text().strip() in shown


def _rules(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for o in objs if o["kind"] in ("ClusterRole", "Role") for r in o["rules"]]


def test_rbac_is_least_privilege(helm: Path) -> None:
    for name in RENDERS:
        objs = docs(render(helm, name))
        for rule in _rules(objs):
            for key in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[key], f"wildcard in {rule}"
            if "secrets" in rule["resources"]:  # spec.auth/tls Secrets; the Raft password
                assert rule["resources"] == ["secrets"], rule
                assert rule["verbs"] == ["get", "create"], "get named Secrets, create <c>-raft"
            assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"])
    custom = docs(render(helm, "custom"))
    roles = [o for o in custom if o["kind"] == "Role"]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    (cluster_role,) = [o for o in custom if o["kind"] == "ClusterRole"]
    cluster_resources = {res for r in cluster_role["rules"] for res in r["resources"]}
    assert cluster_resources == {"customresourcedefinitions", "namespaces", "nodes"}


def test_deployment_runs_the_operator_console_script(helm: Path) -> None:
    (dep,) = [o for o in docs(render(helm, "default")) if o["kind"] == "Deployment"]
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["command"] == ["ringkv-operator"]
    assert c["image"] == "ringkv/ringkv:0.1.0"
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert dep["spec"]["strategy"] == {"type": "Recreate"}
    assert pod["serviceAccountName"] == "demo-ringkv-operator"
    assert "automountServiceAccountToken" not in pod  # in-cluster config needs the token


def _can_i(cluster: LocalCluster, sa: str, *args: str) -> bool:
    done = cluster.kubectl("auth", "can-i", f"--as={sa}", *args, check=False)
    return done.stdout.strip() == "yes"


@pytest.mark.timeout(180)
def test_chart_rbac_on_a_real_apiserver(
    cluster: LocalCluster, namespace: str, helm: Path, tmp_path: Path
) -> None:
    """`helm install` into the cluster (CRD included); the apiserver grants the operator's
    ServiceAccount what it needs in the watched namespace and nothing beyond."""
    watched = f"{namespace}-kv"
    cluster.kubectl("create", "namespace", watched)
    release = f"r{namespace[-6:]}"
    values = f"operator.watchNamespaces={{{watched}}}"
    run_helm(helm, "install", release, str(CHART), "--namespace", namespace, "--set", values,
             kubeconfig=cluster.kubeconfig)  # fmt: skip
    try:
        cluster.kubectl("wait", "--for=condition=Established", "crd/kvclusters.ringkv.io",
                        "--timeout=60s")  # fmt: skip
        sa = f"system:serviceaccount:{namespace}:{release}-ringkv-operator"
        can = lambda *a: _can_i(cluster, sa, *a)  # noqa: E731
        assert can("patch", "kvclusters.ringkv.io", "-n", watched)
        assert can("update", "kvclusters.ringkv.io", "--subresource=status", "-n", watched)
        assert can("create", "statefulsets.apps", "-n", watched)
        assert can("delete", "pods", "-n", watched)
        assert can("delete", "persistentvolumeclaims", "-n", watched)
        assert can("patch", "persistentvolumeclaims", "-n", watched)
        assert can("create", "poddisruptionbudgets.policy", "-n", watched)
        assert can("create", "events", "-n", watched)
        assert can("watch", "customresourcedefinitions.apiextensions.k8s.io")
        assert can("list", "namespaces")
        assert can("get", "nodes")  # zone label of a node pod's node
        assert not can("list", "nodes")
        assert can("get", "secrets", "-n", watched)  # the one spec.auth names
        assert not can("list", "secrets", "-n", watched)
        assert not can("watch", "secrets", "-n", watched)
        assert can("create", "secrets", "-n", watched)  # <cluster>-raft of a TLS cluster
        assert not can("update", "secrets", "-n", watched)  # never overwritten
        assert not can("patch", "secrets", "-n", watched)
        assert not can("get", "secrets", "-n", namespace)  # not watched
        assert not can("create", "pods", "-n", watched)
        assert not can("patch", "kvclusters.ringkv.io", "-n", "default")  # not watched
        assert not can("create", "statefulsets.apps", "-n", namespace)
        assert not can("delete", "namespaces")
        listed = run_helm(helm, "list", "-n", namespace, "-q", kubeconfig=cluster.kubeconfig)
        assert release in listed.split()
    finally:
        run_helm(helm, "uninstall", release, "-n", namespace, "--wait", "--timeout", "60s",
                 kubeconfig=cluster.kubeconfig)  # fmt: skip
        cluster.kubectl("delete", "namespace", watched, "--wait=false", check=False)
