"""Digests: equal contents give equal digests; any difference (or ambiguity) changes them."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st
from kvnode.core.digest import HEADER, Digester, digest

pairs = st.lists(st.tuples(st.binary(max_size=12), st.binary(max_size=12)), max_size=20)


def test_empty_digest_is_pinned() -> None:
    assert digest([]) == hashlib.sha256(HEADER).hexdigest()
    assert (
        digest([(b"k", b"v")])
        == hashlib.sha256(
            HEADER + (1).to_bytes(8, "big") + b"k" + (1).to_bytes(8, "big") + b"v"
        ).hexdigest()
    )


def test_length_prefix_removes_ambiguity() -> None:
    assert digest([(b"ab", b"c")]) != digest([(b"a", b"bc")])
    assert digest([(b"a", b"")]) != digest([(b"", b"a")])
    assert digest([(b"a", b"b"), (b"c", b"d")]) != digest([(b"a", b"bcd")])


def test_order_matters() -> None:
    assert digest([(b"a", b"1"), (b"b", b"2")]) != digest([(b"b", b"2"), (b"a", b"1")])


@settings(max_examples=100, deadline=None)
@given(pairs)
def test_incremental_matches_one_shot(items: list[tuple[bytes, bytes]]) -> None:
    d = Digester()
    for i, (k, v) in enumerate(items):
        assert d.count == i
        d.update(k, v)
        assert d.hexdigest() == digest(items[: i + 1])  # reading does not finalise
    assert d.count == len(items)
    assert d.hexdigest() == digest(items)


@settings(max_examples=100, deadline=None)
@given(pairs, pairs)
def test_different_contents_differ(
    a: list[tuple[bytes, bytes]], b: list[tuple[bytes, bytes]]
) -> None:
    assert (digest(a) == digest(b)) == (a == b)
