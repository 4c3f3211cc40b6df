"""Issue 12: the CLI's token plumbing (``--token`` / ``RINGKV_TOKEN``, ``ringkv token``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from kvnode import cli, localauth
from kvnode.auth import files, tokens
from kvnode.core import errors


class Refusing:
    """A client whose every call is refused as the node would without a valid token."""

    def __enter__(self) -> Refusing:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def get(self, *a: Any, **k: Any) -> Any:
        raise errors.Unauthenticated("this request needs an Authorization: Bearer <token> header")


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []

    def factory(endpoints: list[str], *, timeout: float, direct: bool, token: str | None = None):  # type: ignore[no-untyped-def]
        calls.append({"token": token})
        return Refusing()

    monkeypatch.setattr(cli, "make_client", factory)
    monkeypatch.delenv("RINGKV_TOKEN", raising=False)
    return calls


def test_token_from_flag_and_env_and_exit_code(made: list[dict[str, Any]]) -> None:
    r = CliRunner().invoke(cli.cli, ["--token", "rkv_flag", "get", "k"])
    assert r.exit_code == cli.EXIT_AUTH
    assert json.loads(r.stderr)["code"] == "unauthenticated"
    assert "rkv_flag" not in r.output
    CliRunner().invoke(cli.cli, ["get", "k"], env={"RINGKV_TOKEN": "rkv_env\n"})
    CliRunner().invoke(cli.cli, ["get", "k"])
    assert [c["token"] for c in made] == ["rkv_flag", "rkv_env", None]


def test_token_new_prints_a_token_and_an_entry_that_authenticates_it(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    r = CliRunner().invoke(
        cli.cli,
        ["token", "new", "--name", "app", "--role", "write", "--prefix", "app/",
         "--tokens-file", str(path)],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    table = files.tokens_file(str(path)).get()
    entry = table.authenticate(doc["token"])
    assert entry is not None
    assert (entry.name, entry.role, entry.prefix) == ("app", tokens.Role.WRITE, "app/")
    assert doc["token"] not in path.read_text()
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    again = CliRunner().invoke(
        cli.cli, ["token", "new", "--name", "app", "--role", "read", "--tokens-file", str(path)]
    )
    assert again.exit_code == cli.EXIT_USAGE
    assert "duplicate" in json.loads(again.stderr)["message"]
    assert len(files.tokens_file(str(path)).get().entries) == 1


def test_admin_tokens_cannot_be_scoped() -> None:
    r = CliRunner().invoke(
        cli.cli, ["token", "new", "--name", "a", "--role", "admin", "--prefix", "p"]
    )
    assert r.exit_code == cli.EXIT_USAGE
    assert "cannot have a prefix" in json.loads(r.stderr)["message"]


def test_token_hash_reads_stdin() -> None:
    tok = tokens.new_token()
    r = CliRunner().invoke(cli.cli, ["token", "hash"], input=tok + "\n")
    assert r.exit_code == 0
    assert json.loads(r.stdout) == {"sha256": tokens.hash_token(tok)}


def test_local_auth_files_are_private_and_consistent(tmp_path: Path) -> None:
    made = localauth.ensure_auth_files(str(tmp_path))
    table = files.tokens_file(made.tokens_file).get()
    cluster = files.secret_file(made.cluster_token_file).get()
    admin = files.secret_file(made.admin_token_file).get()
    assert tokens.credential_problem(table, cluster) is None
    assert tokens.credential_problem(table, admin) is None
    assert localauth.cluster_token(made.node_env()) == cluster
    for p in (made.tokens_file, made.cluster_token_file, made.admin_token_file):
        assert Path(p).stat().st_mode & 0o077 == 0
    assert localauth.ensure_auth_files(str(tmp_path)) == made
    assert files.secret_file(made.cluster_token_file).get() == cluster  # kept, not remade
    assert localauth.cluster_token({}) is None
