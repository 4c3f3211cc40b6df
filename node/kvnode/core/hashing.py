"""Stable key → partition mapping.

The hash must be identical in every process, Python version and machine that ever touches the
cluster (nodes, clients, the operator), so it is a fixed cryptographic digest — never ``hash()``.
Changing this function re-homes every key: it is part of the on-disk format.
"""

from __future__ import annotations

import hashlib


def stable_hash(data: bytes) -> int:
    """64-bit unsigned hash of ``data`` (first 8 bytes of BLAKE2b-64, big-endian)."""
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def hash_slot_bytes(raw: bytes) -> bytes:
    """The part of a key that is hashed: the first non-empty ``{tag}``, else the whole key.

    Hash tags (as in Redis Cluster) let a caller put related keys in one partition, where a batch
    is atomic: ``user:{42}:name`` and ``user:{42}:email`` share a partition.
    """
    start = raw.find(b"{")
    if start >= 0:
        end = raw.find(b"}", start + 1)
        if end > start + 1:
            return raw[start + 1 : end]
    return raw


def partition_of(key: str | bytes, partitions: int) -> int:
    """The partition that owns ``key``: ``stable_hash(hash_slot(utf8(key))) mod partitions``."""
    if partitions <= 0:
        raise ValueError(f"partitions must be positive, got {partitions}")
    raw = key.encode("utf-8") if isinstance(key, str) else key
    return stable_hash(hash_slot_bytes(raw)) % partitions
