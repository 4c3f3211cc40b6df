"""Content digests that prove two replicas of a partition hold identical data.

A digest is SHA-256 over a fixed header followed by every ``(key, value)`` pair, each part
prefixed by its length as 8 big-endian bytes. Length prefixes make the encoding injective:
``(b"ab", b"c")`` and ``(b"a", b"bc")`` hash differently, as do a pair list and its concatenation.
Callers must feed pairs in key order (LevelDB iteration order) so equal contents give equal
digests; the digest is order-sensitive on purpose and never sorts (it streams).

Changing the header or the encoding changes every digest: replicas running different versions
would disagree, so bump the header when the format changes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

HEADER = b"ringkv-digest-v1\x00"


class Digester:
    """Incremental digest: ``update`` pair by pair while streaming a snapshot, then read it."""

    __slots__ = ("_count", "_hash")

    def __init__(self) -> None:
        self._hash = hashlib.sha256(HEADER)
        self._count = 0

    def update(self, key: bytes, value: bytes) -> None:
        """Add one pair; pairs must arrive in key order."""
        self._hash.update(len(key).to_bytes(8, "big"))
        self._hash.update(key)
        self._hash.update(len(value).to_bytes(8, "big"))
        self._hash.update(value)
        self._count += 1

    @property
    def count(self) -> int:
        """Pairs added so far (reported next to the digest, so a mismatch says how far apart)."""
        return self._count

    def hexdigest(self) -> str:
        """Hex SHA-256 of everything added so far; the digester stays usable afterwards."""
        return self._hash.copy().hexdigest()


def digest(items: Iterable[tuple[bytes, bytes]]) -> str:
    """Hex digest of ``items`` (key-ordered ``(key, value)`` pairs)."""
    d = Digester()
    for key, value in items:
        d.update(key, value)
    return d.hexdigest()
