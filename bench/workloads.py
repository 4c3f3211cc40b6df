"""YCSB-style workloads for ``bench compare``: what operation comes next and on which key.

Pure and seeded (``random.Random``), so the same seed gives every system the same operation
stream and the unit tests can check shapes exactly. The workloads follow YCSB's core workloads:

- ``load``: inserts of fresh keys (YCSB's load phase), numbered after the preloaded records;
- ``a``: 50 % reads, 50 % updates; ``b``: 95 % reads, 5 % updates; ``c``: reads only;
- ``write``: updates only (every operation a replicated write of an existing key).

Key choice over the preloaded records is ``uniform`` or ``zipfian`` (YCSB's generator of Gray
et al., "Quickly generating billion-record synthetic databases", constant 0.99). Rank 0 is
the hottest record; ringkv and etcd both hash or order keys independently of rank, so no
scrambling is needed to spread hot keys.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

ZIPFIAN_CONSTANT = 0.99
VALUE_BYTES = 1024
KEY_PREFIX = "user"


@dataclass(frozen=True, slots=True)
class Workload:
    """The op mix of one workload: a read with probability ``read``, else a write; writes are
    inserts of fresh keys when ``insert`` (the load phase) and updates otherwise."""

    name: str
    read: float
    insert: bool = False

    @property
    def reads(self) -> bool:
        return self.read > 0


WORKLOADS: dict[str, Workload] = {
    "load": Workload("load", read=0.0, insert=True),
    "a": Workload("a", read=0.5),
    "b": Workload("b", read=0.95),
    "c": Workload("c", read=1.0),
    "write": Workload("write", read=0.0),
}
DISTRIBUTIONS = ("uniform", "zipfian")


@dataclass(frozen=True, slots=True)
class Op:
    kind: str  # "read" | "update" | "insert"
    key: str


def key_name(index: int) -> str:
    """The key of record ``index`` (fixed width, so every key has the same size)."""
    return f"{KEY_PREFIX}{index:010d}"


_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
_POOL = "".join(random.Random(20261201).choices(_ALPHABET, k=1 << 16))


def value_for(key: str, seq: int, size: int = VALUE_BYTES) -> str:
    """A ``size``-byte ASCII value that differs per write (``seq``) and is not one repeated
    byte, so no layer can compress it away cheaply (etcd's gateway and LevelDB's snappy could).
    A slice of a fixed random pool: cheap, so the load generator spends no time on it."""
    head = f"{key}:{seq}:"
    start = (seq * 7919) % (len(_POOL) - size)
    return (head + _POOL[start : start + size])[:size]


class Zipfian:
    """Integers in [0, n) with P(rank k) proportional to 1/(k+1)^theta (YCSB's ZipfianGenerator).

    zeta(n) is computed once (O(n)); each draw is O(1).
    """

    def __init__(self, n: int, *, theta: float = ZIPFIAN_CONSTANT) -> None:
        if n < 2:
            raise ValueError("a zipfian keyspace needs at least 2 items")
        self.n = n
        self.theta = theta
        self.zetan = zeta(n, theta)
        zeta2 = zeta(2, theta)
        self.alpha = 1.0 / (1.0 - theta)
        self.eta = (1 - math.pow(2.0 / n, 1 - theta)) / (1 - zeta2 / self.zetan)
        self.half_pow = 1 + math.pow(0.5, theta)

    def next(self, rng: random.Random) -> int:
        u = rng.random()
        uz = u * self.zetan
        if uz < 1.0:
            return 0
        if uz < self.half_pow:
            return 1
        return min(self.n - 1, int(self.n * math.pow(self.eta * u - self.eta + 1, self.alpha)))

    def probability(self, rank: int) -> float:
        """The exact probability of ``rank`` (for tests and reports)."""
        return 1.0 / math.pow(rank + 1, self.theta) / self.zetan


def zeta(n: int, theta: float) -> float:
    return sum(1.0 / math.pow(i + 1, theta) for i in range(n))


class KeyChooser:
    """Record indices in [0, records) by ``distribution``."""

    def __init__(self, distribution: str, records: int) -> None:
        if distribution not in DISTRIBUTIONS:
            raise ValueError(f"distribution must be one of {DISTRIBUTIONS}, got {distribution!r}")
        self.distribution = distribution
        self.records = records
        self._zipf = Zipfian(records) if distribution == "zipfian" else None

    def next(self, rng: random.Random) -> int:
        if self._zipf is not None:
            return self._zipf.next(rng)
        return rng.randrange(self.records)


class OpStream:
    """The operations of one workload: ``next()`` gives the next op.

    Inserts take fresh indices from ``insert_start`` on (shared by every stream of one
    ``InsertCounter``, so concurrent workers never insert the same key twice).
    """

    def __init__(
        self,
        workload: Workload,
        chooser: KeyChooser,
        *,
        rng: random.Random,
        inserts: InsertCounter,
    ) -> None:
        self.workload = workload
        self.chooser = chooser
        self.rng = rng
        self.inserts = inserts

    def next(self) -> Op:
        if self.workload.insert:
            return Op("insert", key_name(self.inserts.take()))
        index = self.chooser.next(self.rng)
        if self.rng.random() < self.workload.read:
            return Op("read", key_name(index))
        return Op("update", key_name(index))


class InsertCounter:
    """Fresh record indices for inserts, after the preloaded ones."""

    def __init__(self, start: int) -> None:
        self._next = start

    def take(self) -> int:
        n = self._next
        self._next += 1
        return n
