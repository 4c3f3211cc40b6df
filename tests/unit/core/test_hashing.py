"""Hashing stability: key -> partition is part of the on-disk format and must never drift."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kvnode.core.hashing import hash_slot_bytes, partition_of, stable_hash


def test_stable_hash_is_pinned() -> None:
    assert stable_hash(b"") == 16476032584258269876
    assert stable_hash(b"hello") == 12085107955937391741


@pytest.mark.parametrize(
    ("key", "p16", "p64", "p1024"),
    [
        ("", 4, 52, 692),
        ("a", 15, 47, 559),
        ("hello", 13, 61, 125),
        ("ключ", 0, 32, 32),
        ("user:{42}:name", 10, 58, 122),
        ("a{b", 8, 8, 584),
    ],
)
def test_partition_of_is_pinned(key: str, p16: int, p64: int, p1024: int) -> None:
    assert (partition_of(key, 16), partition_of(key, 64), partition_of(key, 1024)) == (
        p16,
        p64,
        p1024,
    )


def test_hash_tags_colocate_keys() -> None:
    assert partition_of("user:{42}:name", 64) == partition_of("user:{42}:email", 64)
    assert partition_of("user:{42}:name", 64) == partition_of("42", 64)  # only the tag is hashed
    assert hash_slot_bytes(b"a{b}c{d}") == b"b"  # the first tag wins
    assert hash_slot_bytes(b"x{}{y}") == b"x{}{y}"  # an empty first tag means the whole key
    assert hash_slot_bytes(b"a{b") == b"a{b"  # unclosed: whole key
    assert hash_slot_bytes(b"}{a}") == b"a"


def test_str_and_utf8_bytes_agree() -> None:
    assert partition_of("ключ", 64) == partition_of("ключ".encode(), 64)


def test_partitions_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        partition_of("k", 0)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40), st.integers(1, 4096))
def test_partition_in_range(key: str, partitions: int) -> None:
    assert 0 <= partition_of(key, partitions) < partitions
