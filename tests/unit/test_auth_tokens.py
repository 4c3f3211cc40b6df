"""Issue 12: the pure token table (roles, scopes, hashing, file validation)."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from kvnode.auth import tokens
from kvnode.auth.tokens import Role


def table(*entries: dict[str, Any]) -> tokens.TokenTable:
    return tokens.parse_table({"tokens": list(entries)})


def test_new_tokens_are_random_prefixed_and_hash_to_sha256() -> None:
    a, b = tokens.new_token(), tokens.new_token()
    assert a != b
    assert a.startswith("rkv_")
    assert len(a) >= 40
    assert tokens.hash_token(a) == hashlib.sha256(a.encode()).hexdigest()


def test_authenticate_finds_the_entry_by_hash_only() -> None:
    r, w = tokens.new_token(), tokens.new_token()
    t = table(
        tokens.entry_json(name="reader", role=Role.READ, token=r),
        tokens.entry_json(name="app", role=Role.WRITE, token=w, prefix="app/"),
    )
    assert t.authenticate(r) is not None
    assert t.authenticate(r).name == "reader"
    entry = t.authenticate(w)
    assert entry is not None
    assert entry.role is Role.WRITE
    assert entry.prefix == "app/"
    assert t.authenticate(tokens.new_token()) is None
    assert t.authenticate(tokens.hash_token(r)) is None  # the hash is not a credential
    assert t.authenticate("") is None


def test_roles_are_ordered_admin_write_read() -> None:
    entry = tokens.TokenEntry("x", Role.WRITE, b"\0" * 32)
    assert entry.can(Role.READ)
    assert entry.can(Role.WRITE)
    assert not entry.can(Role.ADMIN)
    assert tokens.TokenEntry("a", Role.ADMIN, b"\0" * 32).can(Role.WRITE)
    assert not tokens.TokenEntry("r", Role.READ, b"\0" * 32).can(Role.WRITE)


def test_prefix_scope_of_keys_and_listings() -> None:
    e = tokens.TokenEntry("s", Role.WRITE, b"\0" * 32, prefix="app/")
    assert e.covers_key("app/x")
    assert not e.covers_key("other")
    assert not e.covers_key("app")
    assert e.outside(["app/1", "b", "app/2", "c"]) == ["b", "c"]
    assert e.covers_prefix("app/")
    assert e.covers_prefix("app/sub")
    assert not e.covers_prefix("")
    assert not e.covers_prefix("ap")
    free = tokens.TokenEntry("f", Role.READ, b"\0" * 32)
    assert free.covers_key("anything")
    assert free.covers_prefix("")


@pytest.mark.parametrize(
    ("doc", "problem"),
    [
        ([], "JSON object"),
        ({"tokens": {}}, "JSON object"),
        ({"tokens": [{"name": "a", "role": "root", "sha256": "0" * 64}]}, "role must be"),
        ({"tokens": [{"name": "a", "role": "read", "sha256": "abc"}]}, "64 hex digits"),
        ({"tokens": [{"name": "", "role": "read", "sha256": "0" * 64}]}, "name must be"),
        ({"tokens": [{"name": "a", "role": "read", "sha256": "0" * 64, "x": 1}]}, "unknown"),
        ({"tokens": [{"name": "a", "role": "admin", "prefix": "p/", "sha256": "0" * 64}]},
         "cannot have a prefix"),
        ({"tokens": [{"name": "a", "role": "read", "prefix": "", "sha256": "0" * 64}]},
         "non-empty"),
        ({"tokens": [{"name": "a", "role": "read", "sha256": "0" * 64},
                     {"name": "a", "role": "read", "sha256": "1" * 64}]}, "duplicate"),
        ({"tokens": [{"name": "a", "role": "read", "sha256": "0" * 64},
                     {"name": "b", "role": "read", "sha256": "0" * 64}]}, "same sha256"),
    ],
)  # fmt: skip
def test_invalid_files_are_refused_with_the_reason(doc: Any, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        tokens.parse_table(doc)


def test_a_token_pasted_instead_of_its_hash_is_refused_without_echoing_it() -> None:
    secret = tokens.new_token()
    with pytest.raises(ValueError, match="64 hex digits") as info:
        tokens.parse_table({"tokens": [{"name": "a", "role": "read", "sha256": secret}]})
    assert secret not in str(info.value)


@pytest.mark.parametrize(
    ("header", "token"),
    [
        (None, None),
        ("", None),
        ("Basic dXNlcjpwYXNz", None),
        ("Bearer", None),
        ("Bearer   ", None),
        ("Bearer abc", "abc"),
        ("bearer abc ", "abc"),
    ],
)
def test_bearer_header_parsing(header: str | None, token: str | None) -> None:
    assert tokens.bearer_token(header) == token


def test_cluster_credential_must_be_a_listed_admin_token() -> None:
    admin, writer = tokens.new_token(), tokens.new_token()
    t = table(
        tokens.entry_json(name="cluster", role=Role.ADMIN, token=admin),
        tokens.entry_json(name="w", role=Role.WRITE, token=writer),
    )
    assert tokens.credential_problem(t, admin) is None
    assert "not admin" in (tokens.credential_problem(t, writer) or "")
    assert "not listed" in (tokens.credential_problem(t, tokens.new_token()) or "")


def test_describe_shows_names_roles_and_scopes_never_hashes() -> None:
    tok = tokens.new_token()
    t = table(tokens.entry_json(name="app", role=Role.WRITE, token=tok, prefix="app/"))
    text = tokens.describe(t.entries)
    assert text == "app(write 'app/')"
    assert tokens.hash_token(tok) not in text
