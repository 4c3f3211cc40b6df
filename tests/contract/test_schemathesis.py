"""Issue 14: schemathesis proves a real cluster answers exactly what the OpenAPI document says.

One run over every operation of the document (data, internal and admin API), all checks,
positive and negative data, a fixed seed and a bounded number of examples per operation, against
the real 3-node cluster of ``conftest.py``. Deviations from schemathesis's defaults and the two
rewritten admin inputs are in ``schemathesis.toml`` and ``st_hooks.py``, each with its reason.

The run must end with zero failures and the cluster must still be healthy afterwards (random
admin input did not break it). When it fails, its reports (JUnit, NDJSON with every request and
response) are copied to ``$RINGKV_CONTRACT_REPORTS`` (default ``.artifacts/schemathesis/`` at
the repository root) and named in the assertion message.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from kvnode.http.routes import openapi_document
from kvnode.local import LocalCluster

ROOT = Path(__file__).resolve().parents[2]
CONFIG = Path(__file__).with_name("schemathesis.toml")
SEED = 20261201
MAX_EXAMPLES = 40  # per operation and mode; about a minute on two busy cores
RUN_TIMEOUT_S = 420


def schemathesis_command(base_url: str, report_dir: Path) -> list[str]:
    """The exact command (also what a developer runs by hand against ``ringkv local up``)."""
    exe = Path(sys.executable).with_name("schemathesis")
    return [
        str(exe),
        "--no-color",
        "--config-file",
        str(CONFIG),
        "run",
        f"{base_url}/v1/openapi.yaml",
        "--checks",
        "all",
        "--mode",
        "all",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--workers",
        "1",
        "--request-timeout",
        "70",  # X-Ringkv-Timeout may be up to 60 s
        "--report",
        "junit,ndjson",
        "--report-dir",
        str(report_dir),
    ]


def operations_in_document() -> int:
    doc = yaml.safe_load(openapi_document())
    methods = {"get", "put", "post", "delete", "patch", "head", "options"}
    return sum(1 for item in doc["paths"].values() for m in item if m in methods)


def keep_reports(report_dir: Path, output: str) -> Path:
    target_root = Path(os.environ.get("RINGKV_CONTRACT_REPORTS", ROOT / ".artifacts/schemathesis"))
    target = target_root / time.strftime("%Y%m%dT%H%M%S")
    shutil.copytree(report_dir, target, dirs_exist_ok=True)
    (target / "output.txt").write_text(output, encoding="utf-8")
    return target


@pytest.mark.integration
@pytest.mark.timeout(RUN_TIMEOUT_S + 120)
def test_every_answer_conforms_to_the_document(
    healthy_cluster: LocalCluster, tmp_path: Path
) -> None:
    base_url = healthy_cluster.pmap.node("node-0").http_url
    report_dir = tmp_path / "reports"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        schemathesis_command(base_url, report_dir),
        cwd=tmp_path,  # schemathesis keeps a cache in its working directory
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    output = proc.stdout + proc.stderr
    summary = output[output.rfind("SUMMARY") :] if "SUMMARY" in output else output[-4000:]
    print(summary)
    if proc.returncode != 0:
        kept = keep_reports(report_dir, output)
        pytest.fail(f"schemathesis failed (exit {proc.returncode}); reports kept in {kept}\n"
                    f"{output[-20000:]}")  # fmt: skip
    tested = re.search(r"Tested: (\d+)", output)
    cases = re.search(r"(\d+) generated, (\d+) passed", output)
    assert tested is not None, summary
    # every operation but GET /v1/openapi.yaml, the URL schemathesis loads the document from
    # (it leaves that one out by itself)
    assert int(tested.group(1)) == operations_in_document() - 1, summary
    assert cases is not None, summary
    assert cases.group(1) == cases.group(2), summary
    assert int(cases.group(1)) > 1000, summary
    # Random admin input left the cluster whole: every node ready, every partition led.
    info = asyncio.run(healthy_cluster.wait_ready(timeout=30))
    assert info["epoch"] == 1
    assert all(len(r) == 3 for r in info["map"]["replicas"])
