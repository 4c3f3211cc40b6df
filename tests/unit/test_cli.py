"""The ``ringkv`` command line: argument parsing, JSON output and exit codes (fake client)."""

from __future__ import annotations

import json
import sys
import types
from dataclasses import dataclass, field
from typing import Any

import pytest
from click.testing import CliRunner, Result
from kvnode import cli
from kvnode.client import BatchItem, BatchOp, BatchResult, Deletion, Entry, Page
from kvnode.core import errors


@dataclass
class FakeClient:
    """Stands in for SyncClient: records calls, answers from ``answers`` or raises ``fail``."""

    answers: dict[str, Any] = field(default_factory=dict)
    fail: errors.KvError | None = None
    calls: list[tuple[str, tuple, dict]] = field(default_factory=list)
    made_with: dict[str, Any] = field(default_factory=dict)
    closed: bool = False

    def __enter__(self) -> FakeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.closed = True

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((name, args, kwargs))
        if self.fail is not None:
            raise self.fail
        answer = self.answers.get(name)
        return answer(*args, **kwargs) if callable(answer) else answer

    def get(self, *a: Any, **k: Any) -> Any:
        return self._call("get", *a, **k)

    def put(self, *a: Any, **k: Any) -> Any:
        return self._call("put", *a, **k)

    def delete_result(self, *a: Any, **k: Any) -> Any:
        return self._call("delete_result", *a, **k)

    def cas(self, *a: Any, **k: Any) -> Any:
        return self._call("cas", *a, **k)

    def batch(self, *a: Any, **k: Any) -> Any:
        return self._call("batch", *a, **k)

    def keys(self, *a: Any, **k: Any) -> Any:
        return self._call("keys", *a, **k)

    def cluster(self, *a: Any, **k: Any) -> Any:
        return self._call("cluster", *a, **k)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeClient:
    client = FakeClient()

    def factory(
        endpoints: list[str], *, timeout: float, direct: bool, token: str | None = None
    ) -> FakeClient:
        client.made_with = {"endpoints": endpoints, "timeout": timeout, "direct": direct}
        return client

    monkeypatch.setattr(cli, "make_client", factory)
    monkeypatch.delenv("RINGKV_ENDPOINTS", raising=False)
    return client


def run(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli.cli, list(args), input=input, env=env)


def out(result: Result) -> Any:
    return json.loads(result.stdout)


def err(result: Result) -> Any:
    return json.loads(result.stderr)


def test_get_prints_the_entry(fake: FakeClient) -> None:
    fake.answers["get"] = Entry("k", "v", 3, None)
    result = run("get", "k", "--consistency", "eventual")
    assert result.exit_code == 0
    assert out(result) == {"key": "k", "value": "v", "version": 3, "expires_at_ms": None}
    assert fake.calls == [("get", ("k",), {"consistency": "eventual"})]
    assert fake.closed
    assert fake.made_with == {
        "endpoints": ["http://127.0.0.1:7000"],
        "timeout": 5.0,
        "direct": True,
    }


def test_get_missing_exits_3_with_json_error(fake: FakeClient) -> None:
    fake.answers["get"] = None
    result = run("get", "nope")
    assert result.exit_code == 3
    assert result.stdout == ""
    assert err(result)["code"] == "not_found"


def test_global_options_and_env(fake: FakeClient) -> None:
    fake.answers["put"] = 5
    result = run(
        "--timeout", "2.5", "--no-direct", "put", "k", "v",
        env={"RINGKV_ENDPOINTS": "http://a:1, http://b:2"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert fake.made_with == {
        "endpoints": ["http://a:1", "http://b:2"],
        "timeout": 2.5,
        "direct": False,
    }
    result = run("--endpoints", "http://c:3", "put", "k", "v")
    assert fake.made_with["endpoints"] == ["http://c:3"]


def test_put_with_ttl_and_conditions(fake: FakeClient) -> None:
    fake.answers["put"] = 12
    result = run("put", "k", "v", "--ttl", "1.5", "--if-version", "0")
    assert result.exit_code == 0
    assert out(result) == {"key": "k", "version": 12}
    assert fake.calls[0] == (
        "put", ("k", "v"), {"ttl": 1.5, "if_version": 0, "if_value": None}
    )  # fmt: skip


def test_delete(fake: FakeClient) -> None:
    fake.answers["delete_result"] = Deletion("k", False, 0)
    result = run("delete", "k", "--if-value", "old")
    assert result.exit_code == 0
    assert out(result) == {"key": "k", "deleted": False, "version": 0}  # = DeleteResult
    assert fake.calls[0][2] == {"if_version": None, "if_value": "old"}


def test_cas_success_and_precondition_failed(fake: FakeClient) -> None:
    fake.answers["cas"] = 9
    result = run("cas", "k", "v", "--if-version", "8")
    assert result.exit_code == 0
    assert out(result) == {"key": "k", "version": 9}
    fake.fail = errors.PreconditionFailed("moved", key="k", current_version=10)
    result = run("cas", "k", "v", "--if-value", "x")
    assert result.exit_code == 4
    assert err(result) == {
        "code": "precondition_failed",
        "message": "moved",
        "key": "k",
        "current_version": 10,
    }


@pytest.mark.parametrize(
    "args",
    [
        ["cas", "k", "v"],
        ["cas", "k", "v", "--if-version", "1", "--if-value", "x"],
        ["put", "k"],
        ["put", "k", "v", "--ttl", "0"],
        ["put", "k", "v", "--ttl", "abc"],
        ["delete", "k", "--if-version", "-1"],
        ["get", "k", "--consistency", "linear"],
        ["keys", "--limit", "0"],
        ["--timeout", "0", "get", "k"],
        ["--endpoints", "ftp://x", "get", "k"],
        ["--endpoints", ",", "get", "k"],
        ["frobnicate"],
        ["local", "up", "--nodes", "1", "--replication", "3"],
    ],
)
def test_usage_errors_exit_2_with_json(fake: FakeClient, args: list[str]) -> None:
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert err(result)["code"] == "usage"
    assert fake.calls == []


def test_no_arguments_prints_help_and_exits_2(fake: FakeClient) -> None:
    result = run()
    assert result.exit_code in (0, 2)
    assert "Usage" in result.output


def test_help(fake: FakeClient) -> None:
    result = run("--help")
    assert result.exit_code == 0
    assert "get" in result.stdout
    assert "local" in result.stdout


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (errors.Unavailable("no leader", retry_after=1), 1),
        (errors.UnknownOutcome("maybe"), 1),
        (errors.Internal("bug"), 1),
        (errors.InvalidArgument("bad key", field="key"), 2),
        (errors.TooLarge("big", field="value"), 2),
        (errors.NotFound("gone"), 3),
        (errors.PreconditionFailed("no", current_version=1), 4),
    ],
)
def test_domain_errors_map_to_exit_codes(fake: FakeClient, exc: errors.KvError, code: int) -> None:
    fake.fail = exc
    result = run("put", "k", "v")
    assert result.exit_code == code
    assert err(result) == exc.to_dict()
    assert result.stdout == ""


def test_batch_from_stdin(fake: FakeClient) -> None:
    fake.answers["batch"] = BatchResult(True, (BatchItem(0, "a", True, 4, False),))
    body = {"ops": [{"op": "put", "key": "a", "value": "1", "ttl": 3}], "atomic": True}
    result = run("batch", "-", input=json.dumps(body))
    assert result.exit_code == 0, result.output
    assert out(result) == {
        "applied": True,
        "results": [{"index": 0, "key": "a", "applied": True, "version": 4, "existed": False}],
    }
    (_, (ops,), kwargs) = fake.calls[0]
    assert ops == [BatchOp.put("a", "1", ttl=3)]
    assert kwargs == {"atomic": True}


def test_batch_from_file_with_failed_partition(fake: FakeClient, tmp_path: Any) -> None:
    failed = errors.PreconditionFailed("no", current_version=2, index=1, key="b")
    fake.answers["batch"] = BatchResult(
        False, (BatchItem(0, "a", True, 4, True), BatchItem(1, "b", False, error=failed))
    )
    path = tmp_path / "ops.json"
    ops = [{"op": "delete", "key": "a"}, {"op": "put", "key": "b", "value": "x", "if_version": 1}]
    path.write_text(json.dumps({"ops": ops}))
    result = run("batch", str(path))
    assert result.exit_code == 4
    doc = out(result)
    # exactly the HTTP API's 200 body for a partly applied batch: no fields of the CLI's own
    assert doc == {
        "applied": False,
        "results": [
            {"index": 0, "key": "a", "applied": True, "version": 4, "existed": True},
            {"index": 1, "key": "b", "applied": False, "error": failed.to_dict()},
        ],
    }


def test_batch_with_nothing_applied_prints_the_http_error_body(fake: FakeClient) -> None:
    failed = errors.PreconditionFailed("no", current_version=2, index=0, key="a")
    fake.answers["batch"] = BatchResult(
        False, (BatchItem(0, "a", False, error=failed),), error=failed
    )
    body = {"ops": [{"op": "put", "key": "a", "value": "x", "if_version": 1}], "atomic": True}
    result = run("batch", "-", input=json.dumps(body))
    assert result.exit_code == 4
    assert out(result) == {
        **failed.to_dict(),
        "applied": False,
        "results": [{"index": 0, "key": "a", "applied": False, "error": failed.to_dict()}],
    }


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        '{"ops": "x"}',
        '{"ops": [], "extra": 1}',
        '{"ops": [], "atomic": "yes"}',
        '{"ops": [5]}',
        '{"ops": [{"op": "upsert", "key": "a"}]}',
        '{"ops": [{"op": "put", "key": "a", "value": "1", "zz": 2}]}',
        '{"ops": [{"op": "delete"}]}',
    ],
)
def test_bad_batch_file_is_a_usage_error(fake: FakeClient, text: str) -> None:
    result = run("batch", "-", input=text)
    assert result.exit_code == 2, result.output
    assert err(result)["code"] == "invalid_argument"
    assert fake.calls == []


def test_missing_batch_file_is_a_usage_error(fake: FakeClient) -> None:
    result = run("batch", "/no/such/file.json")
    assert result.exit_code == 2
    assert err(result)["code"] == "usage"


def test_keys_one_page_and_all(fake: FakeClient) -> None:
    pages = {
        None: Page((Entry("a", "1", 1), Entry("b", "2", 1)), "b"),
        "b": Page((Entry("c", "3", 1),), None),
    }
    fake.answers["keys"] = lambda prefix, *, limit, cursor, consistency: pages[cursor]
    result = run("keys", "--prefix", "p", "--limit", "2")
    assert result.exit_code == 0
    # = GET /v1/kv?keys_only=true
    assert out(result) == {"items": [{"key": "a"}, {"key": "b"}], "next_cursor": "b"}
    assert fake.calls[0] == (
        "keys", ("p",), {"limit": 2, "cursor": None, "consistency": "strong"}
    )  # fmt: skip
    result = run("keys", "--all")
    assert out(result) == {"items": [{"key": k} for k in "abc"], "next_cursor": None}


def test_cluster(fake: FakeClient) -> None:
    fake.answers["cluster"] = {"epoch": 3, "leaders": {"0": "n1"}}
    result = run("cluster")
    assert result.exit_code == 0
    assert out(result) == {"epoch": 3, "leaders": {"0": "n1"}}


@pytest.fixture
def fake_local(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A stand-in ``kvnode.local`` module (the real one starts processes)."""
    seen: dict[str, Any] = {}

    async def up(**kwargs: Any) -> dict[str, Any]:
        seen["up"] = kwargs
        return {"endpoints": ["http://127.0.0.1:7000"]}

    async def status(base_dir: str | None) -> dict[str, Any]:
        if base_dir == "missing":
            raise FileNotFoundError(base_dir)
        seen["status"] = base_dir
        return {"dir": base_dir, "nodes": {}}

    def down(base_dir: str | None) -> str:
        seen["down"] = base_dir
        return f"/abs/{base_dir}"

    module = types.ModuleType("kvnode.local")
    module.up, module.status, module.down = up, status, down  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "kvnode.local", module)
    import kvnode

    monkeypatch.setattr(kvnode, "local", module, raising=False)
    return seen


def test_local_up_status_down(fake_local: dict[str, Any]) -> None:
    result = run("local", "up", "--nodes", "5", "--partitions", "8", "--base-port", "7100")
    assert result.exit_code == 0, result.output
    assert out(result) == {"endpoints": ["http://127.0.0.1:7000"]}
    assert fake_local["up"] == {
        "nodes": 5,
        "partitions": 8,
        "replication": 3,
        "base_dir": None,  # resolved by kvnode.local (--dir, $RINGKV_LOCAL_DIR, checkout, home)
        "host": "127.0.0.1",
        "base_port": 7100,
        "auth": False,
    }
    result = run("local", "status", "--dir", "d1")
    assert out(result) == {"dir": "d1", "nodes": {}}
    result = run("local", "down", "--dir", "d1")
    assert result.exit_code == 0
    assert out(result) == {"dir": "/abs/d1", "stopped": True}
    assert fake_local["down"] == "d1"


@pytest.mark.parametrize("port", ["80", "32768", "40000"])
def test_local_up_refuses_privileged_and_ephemeral_base_ports(
    fake_local: dict[str, Any], port: str
) -> None:
    result = run("local", "up", "--base-port", port)
    assert result.exit_code == 2
    assert "up" not in fake_local


def test_local_failure_is_json_exit_1(fake_local: dict[str, Any]) -> None:
    result = run("local", "status", "--dir", "missing")
    assert result.exit_code == 1
    assert err(result)["code"] == "local_failed"


def test_local_scale_without_a_cluster_is_json_exit_1(tmp_path: Any) -> None:
    result = run("local", "scale", "4", "--dir", str(tmp_path / "none"), "--quiet")
    assert result.exit_code == 1
    assert err(result)["code"] == "local_failed"


def test_local_scale_refusals(tmp_path: Any) -> None:
    from kvnode.local import LocalCluster

    base = str(tmp_path / "c")
    LocalCluster.create(base, nodes=3, partitions=4, replication=3)  # not started
    below_rf = run("local", "scale", "2", "--dir", base, "--quiet")
    assert below_rf.exit_code == 1
    assert "replication factor 3" in err(below_rf)["message"]
    nothing = run("local", "scale", "--abort", "--dir", base, "--quiet")
    assert nothing.exit_code == 1
    assert "no unfinished rebalance" in err(nothing)["message"]
    same = run("local", "scale", "3", "--dir", base, "--quiet")
    assert same.exit_code == 0
    assert out(same)["moved_partitions"] == 0


def test_progress_bar_line(capsys: pytest.CaptureFixture[str]) -> None:
    from kvnode.rebalance.executor import RebalanceProgress

    bar = cli.ProgressBar()
    bar.update(RebalanceProgress("running", 3, 8, 30, 60, 5_000_000, 12.0, 11.5, ()))
    bar.close()
    line = capsys.readouterr().err
    assert "[###############...............]" in line
    assert "3/8 partitions, 30/60 steps, 5.0 MB moved, 12s elapsed, ETA 12s (running)" in line


def test_cacert_reaches_the_client_and_a_verify_failure_is_reported_as_such(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    made: list[dict[str, Any]] = []
    client = FakeClient()

    def factory(endpoints: list[str], **kwargs: Any) -> FakeClient:
        made.append(kwargs)
        return client

    monkeypatch.setattr(cli, "make_client", factory)
    ca = tmp_path / "ca.crt"
    ca.write_text("a CA bundle\n")
    url = "https://db.example:7000"
    client.fail = errors.TlsVerifyFailed(
        f"TLS certificate of {url} not accepted: certificate verify failed", node=url
    )
    result = run("--endpoints", url, "--cacert", str(ca), "get", "k")
    assert made[-1]["ca_file"] == str(ca)
    assert result.exit_code == 1
    assert err(result)["code"] == "tls_verify_failed"
    assert err(result)["node"] == url
    run("--endpoints", url, "get", "k", env={"RINGKV_CACERT": str(ca)})
    assert made[-1]["ca_file"] == str(ca)
    run("--endpoints", url, "get", "k")
    assert "ca_file" not in made[-1]  # no CA: the client's default (system store for https)
    missing = run("--cacert", str(tmp_path / "nope.crt"), "get", "k")
    assert missing.exit_code == 2
