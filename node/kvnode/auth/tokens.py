"""Roles, scopes and the table of hashed tokens: pure, stdlib only.

A token is a high-entropy random string (``new_token``: 32 random bytes, URL-safe base64, with a
``rkv_`` prefix so a leaked one is recognisable). The server stores only its SHA-256: a
salted slow hash buys nothing for 256 bits of entropy, and SHA-256 keeps a check per request
cheap. Lookup must not leak, through its timing, anything about the stored digests: entries are
indexed by an HMAC of their digest under a random per-table key an attacker does not know (so
which index slot a presented token probes is unpredictable to them), and the one candidate
found is confirmed with ``hmac.compare_digest``. The cost is constant in the number of tokens
(a scan of 100 entries with ``compare_digest`` cost 30 us per request; this costs about 2 us).

Roles are ordered: ``admin`` implies ``write`` implies ``read``. A token may carry a key
``prefix``: it then reaches only keys that start with it (listing only under it), and never the
admin API (an admin token is cluster-wide by definition, so ``admin`` with a prefix is refused
when the file is loaded).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

TOKEN_PREFIX = "rkv_"
TOKEN_BYTES = 32
ENTRY_FIELDS = frozenset({"name", "role", "prefix", "sha256"})
_HEX = frozenset("0123456789abcdef")


class Role(IntEnum):
    """Ordered: a higher role can do everything a lower one can."""

    READ = 1
    WRITE = 2
    ADMIN = 3

    @classmethod
    def parse(cls, raw: object) -> Role:
        if isinstance(raw, str) and raw.upper() in cls.__members__:
            return cls[raw.upper()]
        raise ValueError(f"role must be one of read, write, admin, got {raw!r}")

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class TokenEntry:
    """One credential as the server knows it: a name (for logs), a role, an optional key prefix,
    and the SHA-256 of the token (never the token itself)."""

    name: str
    role: Role
    digest: bytes
    prefix: str | None = None

    def can(self, need: Role) -> bool:
        return self.role >= need

    def covers_key(self, key: str) -> bool:
        return self.prefix is None or key.startswith(self.prefix)

    def covers_prefix(self, prefix: str) -> bool:
        """A listing under ``prefix`` stays inside this token's scope."""
        return self.prefix is None or prefix.startswith(self.prefix)

    def outside(self, keys: Iterable[str]) -> list[str]:
        """The keys of ``keys`` this token may not touch (empty: all allowed)."""
        return [k for k in keys if not self.covers_key(k)]


@dataclass(frozen=True, slots=True)
class TokenTable:
    entries: tuple[TokenEntry, ...] = ()
    _key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    _index: dict[bytes, TokenEntry] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        for entry in self.entries:
            self._index[self._slot(entry.digest)] = entry

    def _slot(self, digest: bytes) -> bytes:
        return hmac.new(self._key, digest, hashlib.sha256).digest()

    def authenticate(self, presented: str) -> TokenEntry | None:
        """The entry whose hash matches ``presented`` (see the module doc on timing)."""
        digest = hashlib.sha256(presented.encode("utf-8", "surrogatepass")).digest()
        entry = self._index.get(self._slot(digest))
        if entry is None or not hmac.compare_digest(entry.digest, digest):
            return None
        return entry

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(e.name for e in self.entries)


def new_token() -> str:
    """A fresh random token (256 bits)."""
    raw = base64.urlsafe_b64encode(secrets.token_bytes(TOKEN_BYTES)).decode().rstrip("=")
    return TOKEN_PREFIX + raw


def hash_token(token: str) -> str:
    """The hex SHA-256 of ``token``: what the tokens file stores."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def entry_json(*, name: str, role: Role, token: str, prefix: str | None = None) -> dict[str, str]:
    """The tokens-file entry for ``token`` (its hash only)."""
    doc = {"name": name, "role": role.label, "sha256": hash_token(token)}
    if prefix is not None:
        doc["prefix"] = prefix
    return doc


def parse_table(doc: Any) -> TokenTable:
    """A tokens file's JSON document (``{"tokens": [entry, ...]}``) as a table; ValueError names
    every bad entry by position and name (never a hash)."""
    if not isinstance(doc, Mapping) or not isinstance(doc.get("tokens"), list):
        raise ValueError('a tokens file is a JSON object {"tokens": [...]}')
    problems: list[str] = []
    entries = [_entry(raw, i, problems) for i, raw in enumerate(doc["tokens"])]
    names = [e.name for e in entries if e is not None]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        problems.append(f"duplicate token names: {', '.join(dupes)}")
    digests = [e.digest for e in entries if e is not None]
    if len(set(digests)) != len(digests):
        problems.append("two entries have the same sha256 (one token listed twice)")
    if problems:
        raise ValueError("invalid tokens file: " + "; ".join(problems))
    return TokenTable(tuple(e for e in entries if e is not None))


def _entry(raw: Any, i: int, problems: list[str]) -> TokenEntry | None:
    where = f"tokens[{i}]"
    if not isinstance(raw, Mapping):
        problems.append(f"{where}: must be an object")
        return None
    unknown = sorted(set(raw) - ENTRY_FIELDS)
    name = raw.get("name")
    if isinstance(name, str) and name:
        where = f"{where} ({name})"
    else:
        problems.append(f"{where}: name must be a non-empty string")
    if unknown:
        problems.append(f"{where}: unknown fields {', '.join(unknown)}")
    try:
        role = Role.parse(raw.get("role"))
    except ValueError as exc:
        problems.append(f"{where}: {exc}")
        role = Role.READ
    prefix = raw.get("prefix")
    if prefix is not None and (not isinstance(prefix, str) or not prefix):
        problems.append(f"{where}: prefix must be a non-empty string when given")
    if prefix is not None and role is Role.ADMIN:
        problems.append(f"{where}: an admin token is cluster-wide and cannot have a prefix")
    digest = raw.get("sha256")
    if not (isinstance(digest, str) and len(digest) == 64 and set(digest.lower()) <= _HEX):
        problems.append(f"{where}: sha256 must be 64 hex digits (the hash, not the token)")
        return None
    if not isinstance(name, str) or not name:
        return None
    return TokenEntry(name=name, role=role, digest=bytes.fromhex(digest), prefix=prefix)


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (scheme case-insensitive), or
    None when absent or another scheme."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value:
        return None
    return value


def describe(entries: Sequence[TokenEntry]) -> str:
    """For logs: names, roles and scopes, never hashes."""
    parts = [
        f"{e.name}({e.role.label}{'' if e.prefix is None else ' ' + repr(e.prefix)})"
        for e in entries
    ]
    return ", ".join(parts) or "(none)"


def credential_problem(table: TokenTable, token: str) -> str | None:
    """Why ``token`` cannot serve as the cluster credential of ``table`` (None: it can): nodes
    call each other's admin API with it, so it must be a listed admin token."""
    entry = table.authenticate(token)
    if entry is None:
        return "the cluster credential is not listed in the tokens file"
    if entry.role is not Role.ADMIN:
        return f"the cluster credential ({entry.name!r}) has role {entry.role.label}, not admin"
    return None
