"""Unit tests of the image map (kubelet/images.py), its agreement with the Dockerfile, and the
client Service records (kubelet/services.py). No cluster, no processes.

Marked `e2e` only because CI runs e2e/ with `-m e2e`.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pytest
from kvharness.cluster import snapshot_image_code, write_image_map
from kvharness.kubelet import images, services
from kvharness.kubelet.envvars import UnsupportedSpec
from kvharness.kubelet.runtime import DEFAULT_PATH

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parent.parent
IMAGE = images.ImageInstall(
    repository="ringkv/ringkv", root="/venv", entrypoint=("tini", "--"), cmd=("serve", "-v")
)


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("ringkv/ringkv:0.1.0", ("ringkv/ringkv", "0.1.0")),
        ("ringkv/ringkv", ("ringkv/ringkv", "latest")),
        ("docker.io/ringkv/ringkv:1", ("ringkv/ringkv", "1")),
        ("docker.io/library/busybox", ("busybox", "latest")),
        ("registry:5000/team/app:v2", ("registry:5000/team/app", "v2")),
        ("registry:5000/team/app", ("registry:5000/team/app", "latest")),
        ("ringkv/ringkv@sha256:abc", ("ringkv/ringkv", "sha256:abc")),
    ],
)
def test_split_reference(ref: str, expected: tuple[str, str]) -> None:
    assert images.split_reference(ref) == expected


@pytest.mark.parametrize(
    ("container", "argv"),
    [
        ({}, ["tini", "--", "serve", "-v"]),  # neither: ENTRYPOINT + CMD
        ({"args": ["check", "$(X)"]}, ["tini", "--", "check", "1"]),  # args replace CMD only
        ({"command": ["sh"]}, ["sh"]),  # command drops ENTRYPOINT *and* CMD
        ({"command": ["sh"], "args": ["-c", "$(X)"]}, ["sh", "-c", "1"]),
    ],
)
def test_command_line_follows_kubernetes_rules(container: dict[str, Any], argv: list[str]) -> None:
    assert images.command_line({"name": "c", **container}, IMAGE, {"X": "1"}) == argv


def test_resolve_by_repository_and_tag_pattern(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    venv.mkdir()
    table = (
        images.ImageInstall(repository="ringkv/ringkv", tags="0.*", root=str(venv)),
        images.ImageInstall(repository="ringkv/ringkv", tags="*", root=str(tmp_path / "none")),
    )
    assert images.resolve(table, "docker.io/ringkv/ringkv:0.1.0").root == str(venv)
    assert images.resolve(table, "busybox:1.36") is images.HOST_IMAGE
    with pytest.raises(UnsupportedSpec, match="missing"):
        images.resolve(table, "ringkv/ringkv:dev")  # maps to a root that does not exist
    env = images.resolve(table, "ringkv/ringkv:0.2").environment()
    assert env["PATH"] == f"{venv}/bin:{DEFAULT_PATH}"


def _dockerfile_final_stage() -> dict[str, Any]:
    """ENTRYPOINT, CMD, WORKDIR and ENV of the Dockerfile's last stage (JSON-form only)."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    stage = text.split("\nFROM ")[-1]
    found: dict[str, Any] = {"env": {}}
    for line in stage.splitlines():
        word, _, rest = line.strip().partition(" ")
        if word in ("ENTRYPOINT", "CMD"):
            found[word.lower()] = json.loads(rest)
        elif word == "WORKDIR":
            found["workingDir"] = rest.strip()
        elif word == "ENV":
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                found["env"][key] = value
    return found


def test_image_map_mirrors_the_dockerfile(tmp_path: Path) -> None:
    """The process kubelet must start the same command, in the same directory, with the same
    environment as the real image; otherwise e2e would test a different program."""
    docker = _dockerfile_final_stage()
    path = write_image_map(tmp_path / "m.json", root="/opt/ringkv", pythonpath=None)
    (entry,) = images.load(path)
    assert entry.repository == "ringkv/ringkv"
    assert list(entry.entrypoint) == docker["entrypoint"]
    assert list(entry.cmd) == docker["cmd"]
    assert entry.working_dir == docker["workingDir"]
    assert entry.environment() == docker["env"]  # incl. PATH = /opt/ringkv/bin + defaults


def test_image_map_passes_a_worktree_pythonpath(tmp_path: Path) -> None:
    harness = str(ROOT / "e2e")
    path = write_image_map(
        tmp_path / "m.json", root="/v", pythonpath=f"{harness}:/w/node:/w/operator"
    )
    (entry,) = images.load(path)
    assert entry.env["PYTHONPATH"] == "/w/node:/w/operator"
    assert entry.root == "/v"
    (bare,) = images.load(write_image_map(tmp_path / "b.json", root="/v", pythonpath=harness))
    assert "PYTHONPATH" not in bare.env


def _pod(name: str, ns: str = "ns", **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns, "labels": labels}, "spec": {}}


def _svc(name: str, selector: dict[str, str] | None, ns: str = "ns", **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns}, "spec": {"selector": selector, **spec}}


def test_service_names_resolve_to_one_ready_pod_only() -> None:
    pods = [
        (_pod("db-1", app="db"), "127.0.16.2", True),
        (_pod("db-0", app="db"), "127.0.16.1", False),  # not ready: never chosen
        (_pod("db-2", app="db"), "127.0.16.3", True),
        (_pod("db-9", "other", app="db"), "127.0.16.9", True),  # other namespace
        (_pod("web-0", app="web"), "127.0.16.5", False),
    ]
    svcs = [
        _svc("db", {"app": "db"}, clusterIP="10.0.0.7"),
        _svc("db-headless", {"app": "db"}, clusterIP="None"),  # headless: per-pod records
        _svc("web", {"app": "web"}),  # no ready pod: no record
        _svc("manual", None),  # no selector: endpoints are someone else's business
    ]
    records = services.service_records(pods, svcs)
    assert records == [services.ServiceRecord("127.0.16.2", "db", "ns")]  # first ready by name
    same_ns = services.hosts_lines(records, "ns")
    assert same_ns == ["127.0.16.2\tdb.ns.svc.cluster.local\tdb.ns.svc\tdb.ns\tdb"]
    assert services.hosts_lines(records, "elsewhere") == [
        "127.0.16.2\tdb.ns.svc.cluster.local\tdb.ns.svc\tdb.ns"
    ]


def test_terminating_pods_are_not_service_targets() -> None:
    pod = _pod("db-0", app="db")
    pod["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert services.service_records([(pod, "127.0.16.1", True)], [_svc("db", {"app": "db"})]) == []


def test_image_code_is_a_content_keyed_copy_outside_the_checkout(tmp_path: Path) -> None:
    """Pods may mount volumes over the checkout's location (the operator mounts /tmp); the image's
    code is a copy in the cache, the same directory for the same code."""
    import kvnode
    import kvoperator

    first = snapshot_image_code(tmp_path)
    assert first == snapshot_image_code(tmp_path)
    assert first.parent == tmp_path / "e2e-image"
    for mod in (kvnode, kvoperator):
        src = Path(mod.__file__).parent
        assert (first / src.name / "__init__.py").read_bytes() == (src / "__init__.py").read_bytes()
    assert (first / "kvnode" / "openapi.yaml").is_file()
    assert not list(first.rglob("__pycache__"))
