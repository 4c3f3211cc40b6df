"""Issue 12 through the real CLI: ``ringkv local up --tls --auth`` makes a local cluster that
serves HTTPS only with encrypted Raft, and prints lines a user can copy: the ``curl --cacert``
and ``ringkv --cacert`` lines work as printed; ``local status`` shows https URLs; ``local
scale`` (a new node gets its own certificate), ``local backup`` and ``local restore --tls`` work
over TLS; a later plain ``local up`` keeps TLS on.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kvnode.local import LocalCluster

from tests.support.addresses import claim_address

pytestmark = pytest.mark.integration
CLI = [sys.executable, "-c", "from kvnode.cli import main; main()"]


def run(argv: list[str], env: dict[str, str] | None = None, timeout: float = 180) -> Any:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, check=False)  # fmt: skip


def ringkv(*args: str, env: dict[str, str] | None = None, timeout: float = 180) -> Any:
    return run([*CLI, *args], env=env, timeout=timeout)


@pytest.fixture
def claims(tmp_path: Path) -> Iterator[tuple[Path, list[Any]]]:
    held = [claim_address(partitions=4), claim_address(partitions=4)]
    try:
        yield tmp_path, held
    finally:
        try:
            for name in ("local", "restored"):
                if (tmp_path / name / "cluster.json").exists():
                    LocalCluster.load(str(tmp_path / name)).kill_everything()
        finally:
            for claim in held:
                claim.release()


@pytest.mark.timeout(400)
def test_local_up_tls_auth_and_its_printed_lines(claims: tuple[Path, list[Any]]) -> None:
    tmp, (claim, other) = claims
    base = str(tmp / "local")
    up = ringkv("local", "up", "--tls", "--auth", "--dir", base, "--nodes", "3",
                "--partitions", "4", "--host", claim.host,
                "--base-port", str(claim.base_port))  # fmt: skip
    assert up.returncode == 0, up.stderr
    info = json.loads(up.stdout)
    assert all(url.startswith("https://") for url in info["endpoints"])
    tls = info["tls"]
    assert f"RINGKV_CACERT={tls['ca_file']}" in info["hint"]
    admin = Path(info["auth"]["admin_token_file"]).read_text().strip()
    as_admin = {"RINGKV_TOKEN": admin}

    curl = run(shlex.split(tls["curl"]))  # curl --cacert <ca> https://<node>/readyz
    assert curl.returncode == 0, curl.stderr
    assert run(["curl", "-sS", info["endpoints"][0] + "/readyz"]).returncode != 0  # no CA: refused

    cli_line = shlex.split(tls["cli"])  # ringkv --endpoints <url> --cacert <ca> get k
    assert cli_line[0] == "ringkv"
    assert ringkv(*cli_line[1:-2], "put", "k", "v1", env=as_admin).returncode == 0
    got = ringkv(*cli_line[1:], env=as_admin)
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["value"] == "v1"
    env = {"RINGKV_ENDPOINTS": ",".join(info["endpoints"]), "RINGKV_CACERT": tls["ca_file"],
           **as_admin}  # fmt: skip
    for i in range(10):
        assert ringkv("put", f"k{i}", f"v{i}", env=env).returncode == 0

    status = json.loads(ringkv("local", "status", "--dir", base).stdout)
    assert all(n["url"].startswith("https://") and n["running"] for n in status["nodes"].values())

    scaled = ringkv("local", "scale", "4", "--dir", base, "--quiet", timeout=300)
    assert scaled.returncode == 0, scaled.stderr
    cluster = LocalCluster.load(base)
    assert os.path.exists(os.path.join(base, "tls", "node-3", "tls.crt"))
    env["RINGKV_ENDPOINTS"] = ",".join(cluster.endpoints)
    for i in range(10):
        got = ringkv("get", f"k{i}", env=env)
        assert got.returncode == 0, got.stderr
        assert json.loads(got.stdout)["value"] == f"v{i}"

    dest = str(tmp / "backup")
    backed = ringkv("local", "backup", dest, "--dir", base)
    assert backed.returncode == 0, backed.stderr
    assert json.loads(backed.stdout)["keys"] == 11

    target = str(tmp / "restored")
    restored = ringkv("local", "restore", dest, "--tls", "--dir", target, "--host", other.host,
                      "--base-port", str(other.base_port))  # fmt: skip
    assert restored.returncode == 0, restored.stderr
    out = json.loads(restored.stdout)
    assert "RINGKV_CACERT=" in out["hint"]
    copy = LocalCluster.load(target)
    assert copy.ca_file is not None
    got = ringkv("get", "k3", env={"RINGKV_ENDPOINTS": ",".join(copy.endpoints),
                                   "RINGKV_CACERT": copy.ca_file})  # fmt: skip
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["value"] == "v3"

    assert ringkv("local", "down", "--dir", base).returncode == 0
    again = ringkv("local", "up", "--dir", base)  # no --tls: the cluster keeps it
    assert again.returncode == 0, again.stderr
    assert all(url.startswith("https://") for url in json.loads(again.stdout)["endpoints"])
