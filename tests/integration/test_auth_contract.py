"""Issue 12 + 14: the OpenAPI contract also holds with auth on.

The same schemathesis run as ``tests/contract/test_schemathesis.py`` (its command, config and
hooks), fewer examples per operation to keep it cheap, against a real 3-node cluster that has a
tokens file, sending an admin token on every request: every answer, the admin API included,
must still conform to the document. The document declares the bearer scheme as optional
(``security: [{bearer: []}, {}]``, auth is off without a tokens file), so schemathesis's
``ignored_auth`` probe has nothing to prove here; refusals are the auth matrix's job
(``test_auth_matrix.py``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from kvnode import localauth
from kvnode.auth import files
from kvnode.local import LocalCluster
from kvnode.settings import PREFIX, NodeSettings

from tests.contract.test_schemathesis import ROOT, keep_reports, schemathesis_command
from tests.support.clusters import FAST_RAFT, Clusters

pytestmark = pytest.mark.integration
MAX_EXAMPLES = "10"
RUN_TIMEOUT_S = 300
STATUS = re.compile(r'"status_code":\s*(\d+)')
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(NodeSettings)}
NODE_ENV = {  # production Raft timings: no failover here, fewer spurious elections
    var: str(_DEFAULTS[var.removeprefix(PREFIX).lower()])
    for var in FAST_RAFT
    if var.removeprefix(PREFIX).lower() != "log_level"
}


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[tuple[LocalCluster, str]]:
    auth = localauth.ensure_auth_files(str(tmp_path / "auth"))
    admin = files.secret_file(auth.admin_token_file).get()
    clusters = Clusters(str(tmp_path))
    failed = False
    try:
        # replication = nodes: DELETE /v1/admin/partitions/{p} is always refused (412).
        cluster = clusters.create(
            nodes=3, partitions=8, replication=3, env={**NODE_ENV, **auth.node_env()}
        )
        asyncio.run(cluster.wait_ready(timeout=90))
        yield cluster, admin
    except BaseException:
        failed = True
        raise
    finally:
        clusters.teardown(show_logs=failed)


@pytest.mark.timeout(RUN_TIMEOUT_S + 180)
def test_the_contract_holds_with_auth_on(secured: tuple[LocalCluster, str], tmp_path: Path) -> None:
    cluster, admin = secured
    report_dir = tmp_path / "reports"
    argv = schemathesis_command(cluster.pmap.node("node-0").http_url, report_dir)
    argv[argv.index("--max-examples") + 1] = MAX_EXAMPLES
    argv += ["-H", f"Authorization: Bearer {admin}"]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S, check=False)  # fmt: skip
    output = proc.stdout + proc.stderr
    summary = output[output.rfind("SUMMARY") :] if "SUMMARY" in output else output[-4000:]
    print(summary)
    if proc.returncode != 0:
        kept = keep_reports(report_dir, output)
        pytest.fail(f"schemathesis failed (exit {proc.returncode}); reports in {kept}\n"
                    f"{output[-20000:]}")  # fmt: skip
    cases = re.search(r"(\d+) generated, (\d+) passed", output)
    assert cases is not None, summary
    assert cases.group(1) == cases.group(2), summary
    assert int(cases.group(1)) > 200, summary
    # The run went through auth: answers were served (200s), none refused for the token.
    statuses = Counter(
        int(m) for f in report_dir.glob("*.ndjson") for m in STATUS.findall(f.read_text())
    )
    assert statuses[200] > 50, statuses
    assert statuses[401] == statuses[403] == 0, statuses
    info = asyncio.run(cluster.wait_ready(timeout=30))
    assert info["epoch"] == 1
