"""Issue 12 through the real CLI: ``ringkv local up --auth`` makes a secured local cluster and
says where the user's token is; the CLI is refused without a token (exit 5) and works with
``RINGKV_TOKEN``; a token added with ``ringkv token new --tokens-file`` works without a restart;
and ``ringkv local scale`` moves data under auth (every admin call with the cluster credential).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kvnode.cli import EXIT_AUTH
from kvnode.local import LocalCluster

from tests.support.addresses import claim_address

pytestmark = pytest.mark.integration
CLI = "from kvnode.cli import main; main()"


def ringkv(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> Any:
    done = subprocess.run(
        [sys.executable, "-c", CLI, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )
    return done


@pytest.fixture
def state(tmp_path: Path) -> Iterator[tuple[str, Any]]:
    claim = claim_address(partitions=4)
    base = str(tmp_path / "local")
    try:
        yield base, claim
    finally:
        try:
            if os.path.exists(os.path.join(base, "cluster.json")):
                LocalCluster.load(base).kill_everything()
        finally:
            claim.release()


@pytest.mark.timeout(300)
def test_local_up_auth_cli_tokens_and_scale(state: tuple[str, Any]) -> None:
    base, claim = state
    up = ringkv("local", "up", "--auth", "--dir", base, "--nodes", "3", "--partitions", "4",
                "--host", claim.host, "--base-port", str(claim.base_port))  # fmt: skip
    assert up.returncode == 0, up.stderr
    info = json.loads(up.stdout)
    admin = Path(info["auth"]["admin_token_file"]).read_text().strip()
    assert f"RINGKV_TOKEN=$(cat {info['auth']['admin_token_file']})" in info["hint"]
    assert admin not in up.stdout + up.stderr  # the token itself is never printed by `up`
    endpoints = {"RINGKV_ENDPOINTS": ",".join(info["endpoints"])}

    refused = ringkv("put", "k", "v", env=endpoints)
    assert refused.returncode == EXIT_AUTH, refused.stderr
    assert json.loads(refused.stderr)["code"] == "unauthenticated"
    as_admin = {**endpoints, "RINGKV_TOKEN": admin}
    for i in range(5):
        assert ringkv("put", f"k{i}", f"v{i}", env=as_admin).returncode == 0

    made = ringkv("token", "new", "--name", "app", "--role", "write", "--prefix", "app/",
                  "--tokens-file", info["auth"]["tokens_file"])  # fmt: skip
    assert made.returncode == 0, made.stderr
    as_app = {**endpoints, "RINGKV_TOKEN": json.loads(made.stdout)["token"]}
    deadline = time.monotonic() + 15  # nodes re-read the tokens file within a second
    while ringkv("put", "app/x", "1", env=as_app).returncode != 0:
        assert time.monotonic() < deadline, "the new token was not accepted without a restart"
        time.sleep(0.2)
    out_of_scope = ringkv("put", "k0", "overwrite", env=as_app)
    assert out_of_scope.returncode == EXIT_AUTH
    assert json.loads(out_of_scope.stderr)["code"] == "permission_denied"

    scaled = ringkv("local", "scale", "4", "--dir", base, "--quiet", timeout=240)
    assert scaled.returncode == 0, scaled.stderr
    assert json.loads(scaled.stdout)["nodes"] == 4
    for i in range(5):
        got = ringkv("get", f"k{i}", env=as_admin)
        assert got.returncode == 0, got.stderr
        assert json.loads(got.stdout)["value"] == f"v{i}"
    cluster = LocalCluster.load(base)
    logs = "".join(Path(cluster.node(n).log_path).read_text() for n in cluster.node_ids)
    assert admin not in logs
    assert as_app["RINGKV_TOKEN"] not in logs
