"""Issue 14: a client generated from the OpenAPI document by a standard generator
(openapi-python-client) works against a real cluster: put, get, a CAS conflict parsed as a typed
412, batches (partly applied, and an atomic failure naming the failing op), a listing followed
through its cursor, and error bodies parsed into the typed ``Error`` model.

The client is generated at test time into a temporary directory from the document the node
serves (``GET /v1/openapi.yaml``), never committed: the document is the single source of truth,
so nothing generated can go stale, and generation takes seconds.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from kvnode.core.hashing import partition_of
from kvnode.local import LocalCluster

from tests.contract.conftest import PARTITIONS

PACKAGE = "ringkv_generated_client"


@pytest.fixture(scope="module")
def generated(
    contract_cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ModuleType]:
    import httpx

    base = contract_cluster.pmap.node("node-0").http_url
    doc = httpx.get(f"{base}/v1/openapi.yaml", timeout=10).raise_for_status().content
    work = tmp_path_factory.mktemp("generated")
    (work / "openapi.yaml").write_bytes(doc)
    bindir = str(Path(sys.executable).parent)  # the generator's post-hook runs ruff from here
    proc = subprocess.run(
        [
            str(Path(bindir) / "openapi-python-client"),
            "generate",
            "--path",
            str(work / "openapi.yaml"),
            "--output-path",
            str(work / PACKAGE),
            "--meta",
            "none",
        ],
        env={**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", "")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    sys.path.insert(0, str(work))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(work))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def _mod(name: str) -> Any:
    return importlib.import_module(f"{PACKAGE}.{name}")


@pytest.fixture
def client(generated: ModuleType, healthy_cluster: LocalCluster) -> Iterator[Any]:
    base = healthy_cluster.pmap.node("node-1").http_url
    with generated.Client(base_url=base, raise_on_unexpected_status=True, timeout=30) as c:
        yield c


@pytest.mark.integration
def test_put_get_and_cas_conflict(client: Any) -> None:
    put_key, get_key = _mod("api.default.put_key"), _mod("api.default.get_key")
    models = _mod("models")
    put = put_key.sync_detailed("gen/k1", client=client, body=models.PutBody(value="v1"))
    assert put.status_code == 200
    assert isinstance(put.parsed, models.PutResult)
    version = put.parsed.version
    got = get_key.sync_detailed("gen/k1", client=client)
    assert got.status_code == 200
    assert isinstance(got.parsed, models.Entry)
    assert (got.parsed.key, got.parsed.value, got.parsed.version) == ("gen/k1", "v1", version)
    # CAS with a stale version: a typed 412 naming the current version
    stale = models.PutBody(value="v2", if_version=version + 1000)
    conflict = put_key.sync_detailed("gen/k1", client=client, body=stale)
    assert conflict.status_code == 412
    assert isinstance(conflict.parsed, models.Error)
    assert conflict.parsed.code == models.ErrorCode.PRECONDITION_FAILED
    assert conflict.parsed.current_version == version
    ok = put_key.sync_detailed(
        "gen/k1", client=client, body=models.PutBody(value="v2", if_version=version)
    )
    assert ok.status_code == 200
    assert get_key.sync("gen/k1", client=client).value == "v2"


@pytest.mark.integration
def test_error_bodies_parse_into_the_typed_error(client: Any) -> None:
    get_key, list_keys = _mod("api.default.get_key"), _mod("api.default.list_keys")
    models = _mod("models")
    missing = get_key.sync_detailed("gen/never-written", client=client)
    assert missing.status_code == 404
    assert isinstance(missing.parsed, models.Error)
    assert missing.parsed.code == models.ErrorCode.NOT_FOUND
    assert missing.parsed.message
    bad = list_keys.sync_detailed(client=client, prefix="gen/", x_ringkv_epoch=0)
    assert bad.status_code == 409
    assert bad.parsed.code == models.ErrorCode.STALE_EPOCH
    assert isinstance(bad.parsed.map_, models.PartitionMap)
    assert bad.parsed.map_.epoch >= 1
    assert bad.headers["X-Ringkv-Node"] == "node-1"


@pytest.mark.integration
def test_batches_partly_applied_and_atomic_failure(client: Any) -> None:
    batch, get_key, put_key = (
        _mod("api.default.batch"),
        _mod("api.default.get_key"),
        _mod("api.default.put_key"),
    )
    models = _mod("models")
    put_op, del_op = models.BatchPutOp.PUT, models.BatchDeleteOp.DELETE
    v = put_key.sync("gen/b:{1}:c", client=client, body=models.PutBody(value="c")).version
    done = batch.sync_detailed(
        client=client,
        body=models.BatchBody(
            ops=[
                models.BatchPut(op=put_op, key="gen/b:{1}:a", value="1"),
                models.BatchPut(op=put_op, key="gen/b:{2}:b", value="2"),
                models.BatchDelete(op=del_op, key="gen/b:{1}:c"),
            ]
        ),
    )
    assert done.status_code == 200
    assert isinstance(done.parsed, models.BatchResponse)
    assert done.parsed.applied is True
    assert [(r.index, r.applied) for r in done.parsed.results] == [(0, True), (1, True), (2, True)]
    assert done.parsed.results[2].existed is True
    # atomic, ops[2]'s condition fails: 412, nothing applied, index 2 = its position in `ops`
    failed = batch.sync_detailed(
        client=client,
        body=models.BatchBody(
            atomic=True,
            ops=[
                models.BatchPut(op=put_op, key="gen/b:{1}:a", value="x"),
                models.BatchDelete(op=del_op, key="gen/b:{1}:d"),
                models.BatchPut(op=put_op, key="gen/b:{1}:c", value="y", if_version=v),
            ],
        ),
    )
    assert failed.status_code == 412
    assert isinstance(failed.parsed, models.BatchFailed)
    assert failed.parsed.code == models.ErrorCode.PRECONDITION_FAILED
    assert (failed.parsed.index, failed.parsed.key) == (2, "gen/b:{1}:c")
    assert failed.parsed.applied is False
    assert [r.applied for r in failed.parsed.results] == [False, False, False]
    assert get_key.sync("gen/b:{1}:a", client=client).value == "1"


@pytest.mark.integration
def test_listing_follows_the_cursor(client: Any) -> None:
    put_key, list_keys = _mod("api.default.put_key"), _mod("api.default.list_keys")
    models = _mod("models")
    written = sorted(f"gen/list/{i:02d}" for i in range(7))
    for key in written:
        assert put_key.sync(key, client=client, body=models.PutBody(value=key)) is not None
    seen: list[str] = []
    cursor: Any = _mod("types").UNSET
    for _ in range(10):
        page = list_keys.sync_detailed(client=client, prefix="gen/list/", limit=3, cursor=cursor)
        assert page.status_code == 200
        assert isinstance(page.parsed, models.Page)
        assert all(isinstance(item, models.Entry) for item in page.parsed.items)
        seen += [item.key for item in page.parsed.items]
        if page.parsed.next_cursor is None:
            break
        cursor = page.parsed.next_cursor
    assert seen == written
    keys_only = list_keys.sync(client=client, prefix="gen/list/", keys_only=True)
    assert all(isinstance(item, models.KeyOnly) for item in keys_only.items)
    assert [item.key for item in keys_only.items] == written


@pytest.mark.integration
def test_partly_applied_batch_is_200_and_names_the_failing_op_by_position(client: Any) -> None:
    """Issue 8 on a real cluster: one partition's condition fails while the others apply, so
    the answer is 200 with ``applied: false``, and the failure's ``index`` is the op's position
    in the request (not in its partition's share)."""
    batch, get_key = _mod("api.default.batch"), _mod("api.default.get_key")
    models = _mod("models")
    first = "gen/p:{a}:1"
    same_as_first = "gen/p:{a}:2"
    other = next(
        f"gen/p:{{{i}}}:x"
        for i in range(100)
        if partition_of(f"gen/p:{{{i}}}:x", PARTITIONS) != partition_of(first, PARTITIONS)
    )
    put_op = models.BatchPutOp.PUT
    ops = [
        models.BatchPut(op=put_op, key=first, value="1"),
        models.BatchPut(op=put_op, key=other, value="2", if_version=12345),  # fails
        models.BatchPut(op=put_op, key=same_as_first, value="3"),
    ]
    answer = batch.sync_detailed(client=client, body=models.BatchBody(ops=ops))
    assert answer.status_code == 200
    assert isinstance(answer.parsed, models.BatchResponse)
    assert answer.parsed.applied is False
    results = answer.parsed.results
    assert [(r.index, r.key, r.applied) for r in results] == [
        (0, first, True),
        (1, other, False),
        (2, same_as_first, True),
    ]
    assert results[1].error.code == models.ErrorCode.PRECONDITION_FAILED
    assert (results[1].error.index, results[1].error.key) == (1, other)
    assert get_key.sync(same_as_first, client=client).value == "3"
    assert get_key.sync_detailed(other, client=client).status_code == 404
