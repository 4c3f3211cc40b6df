"""The bounded change history of one partition replica, recorded on its apply path.

Every replica records the changes of every entry it applies (``record``, called from the Raft
ticker thread), so the history survives leader changes: any replica can serve a watcher, and
since positions are log indexes (the same on every replica) a watcher can resume on any of them.

What is kept (``HistoryLimits``): the newest entries that made changes, at most ``max_entries``
of them and at most ``max_bytes`` (``Change.size`` summed); the oldest are evicted first, whole
entries at a time, but the newest entry is always kept. ``kept_after`` says what is complete:
every change of every entry with index > ``kept_after`` is here. It starts at the store's applied
index when the replica opens (a restarted node starts empty: history is memory only), jumps to
the snapshot's index when a snapshot replaces the data, and moves up as entries are evicted. A
read from a position older than that is answered ``compacted``, never with a gap.

Thread safety: one lock guards everything; readers (asyncio thread) register a ``waker`` in the
same critical section in which they found nothing new, so a record in between cannot be missed.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kvnode.watch.model import WHOLE, Change, Effect, Position

Waker = Callable[[], None]


@dataclass(frozen=True, slots=True)
class HistoryLimits:
    """How much change history each partition replica keeps (both bounds apply)."""

    max_entries: int = 10_000
    max_bytes: int = 8 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.max_entries < 1 or self.max_bytes < 1:
            raise ValueError("history limits must be positive")


@dataclass(frozen=True, slots=True)
class Read:
    """What one ``ChangeHistory.read`` found.

    ``changes``: matching changes in commit order, each with the position to resume after it.
    ``position``: resume after this to continue (never before the position asked for).
    ``compacted``: the position asked for is older than ``kept_after`` (nothing else is set).
    ``closed``: the replica was closed; read from another one.
    """

    changes: tuple[tuple[Change, Position], ...]
    position: Position
    kept_after: int
    last_index: int
    compacted: bool = False
    closed: bool = False


def covers(kept_after: int, after: Position) -> bool:
    """Whether a history complete after ``kept_after`` has every change following ``after``."""
    if after.seq == WHOLE:
        return after.index >= kept_after
    return after.index > kept_after


@dataclass(frozen=True, slots=True)
class Entry:
    """One applied log entry that changed something."""

    index: int
    ts_ms: int
    effects: tuple[Effect, ...]


def entry_changes(
    partition: int, entry: Entry, after: Position, prefix: str
) -> list[tuple[Change, Position]]:
    """Changes of ONE entry that follow ``after`` and match ``prefix``, each with its resume
    position: the last one covers the whole entry (nothing else in it concerns this watcher)."""
    out = [
        (_change(partition, entry, seq, e), Position(entry.index, seq))
        for seq, e in enumerate(entry.effects)
        if Position(entry.index, seq) > after and e.key.startswith(prefix)
    ]
    if out:
        last = out[-1][0]
        out[-1] = (last, Position(last.index, WHOLE))
    return out


def _change(partition: int, entry: Entry, seq: int, e: Effect) -> Change:
    return Change(
        partition=partition,
        index=entry.index,
        seq=seq,
        kind=e.kind,
        key=e.key,
        value=e.value,
        prev_version=e.prev_version,
        expires_at_ms=e.expires_at_ms,
        ts_ms=entry.ts_ms,
    )


class ChangeHistory:
    """Changes of one partition replica, newest last, bounded by ``limits``."""

    def __init__(self, partition: int, *, limits: HistoryLimits, kept_after: int) -> None:
        self.partition = partition
        self.limits = limits
        self._lock = threading.Lock()
        self._indexes: list[int] = []
        self._entries: list[Entry] = []
        self._sizes: list[int] = []
        self._head = 0  # entries before it are evicted (trimmed from the lists in bulk)
        self._bytes = 0
        self._kept_after = kept_after
        self._last_index = kept_after
        self._wakers: list[Waker] = []
        self._closed = False

    # -- writer side (Raft ticker thread) -----------------------------------------------------
    def record(self, index: int, effects: Sequence[Effect], *, ts_ms: int = 0) -> None:
        """Entry ``index`` (proposed at ``ts_ms``) was applied and did ``effects`` (maybe
        none: it still moves the position watchers reach)."""
        with self._lock:
            if index <= self._last_index:
                return  # replayed or already covered by a snapshot
            self._last_index = index
            if not effects:
                return
            size = sum(e.size for e in effects)
            self._indexes.append(index)
            self._entries.append(Entry(index, ts_ms, tuple(effects)))
            self._sizes.append(size)
            self._bytes += size
            self._evict()
            wakers, self._wakers = self._wakers, []
        for wake in wakers:
            wake()

    def reset(self, kept_after: int) -> None:
        """The replica's data was replaced by a snapshot at ``kept_after``: start over."""
        with self._lock:
            self._indexes, self._entries, self._sizes = [], [], []
            self._head = self._bytes = 0
            self._kept_after = max(self._kept_after, kept_after)
            self._last_index = max(self._last_index, kept_after)
            wakers, self._wakers = self._wakers, []
        for wake in wakers:
            wake()

    def close(self) -> None:
        """The replica is gone; readers must go elsewhere."""
        with self._lock:
            self._closed = True
            self._indexes, self._entries, self._sizes = [], [], []
            self._head = self._bytes = 0
            wakers, self._wakers = self._wakers, []
        for wake in wakers:
            wake()

    def _evict(self) -> None:
        count = len(self._indexes) - self._head
        limits = self.limits
        while count > 1 and (count > limits.max_entries or self._bytes > limits.max_bytes):
            self._bytes -= self._sizes[self._head]
            self._kept_after = self._indexes[self._head]
            self._head += 1
            count -= 1
        if self._head > 1024 and self._head * 2 > len(self._indexes):
            del self._indexes[: self._head], self._entries[: self._head], self._sizes[: self._head]
            self._head = 0

    # -- reader side ----------------------------------------------------------------------------
    def read(
        self,
        after: Position,
        *,
        prefix: str = "",
        max_changes: int = 1000,
        max_bytes: int = 1 << 20,
        waker: Waker | None = None,
    ) -> Read:
        """Changes after ``after`` matching ``prefix`` (at least one if any, then up to the
        bounds). When there are none and ``waker`` is given, it is called once on the next
        record, reset or close."""
        with self._lock:
            if self._closed:
                return Read((), after, self._kept_after, self._last_index, closed=True)
            if not covers(self._kept_after, after):
                return Read((), after, self._kept_after, self._last_index, compacted=True)
            found, position = self._collect(after, prefix, max_changes, max_bytes)
            if not found and waker is not None:
                self._wakers.append(waker)
            return Read(tuple(found), position, self._kept_after, self._last_index)

    def _collect(
        self, after: Position, prefix: str, max_changes: int, max_bytes: int
    ) -> tuple[list[tuple[Change, Position]], Position]:
        found: list[tuple[Change, Position]] = []
        used = 0
        start = bisect.bisect_left(self._indexes, after.index, lo=self._head)
        for i in range(start, len(self._indexes)):
            picked = entry_changes(self.partition, self._entries[i], after, prefix)
            for change, rev in picked:
                if found and (len(found) >= max_changes or used + change.size > max_bytes):
                    return found, found[-1][1]
                found.append((change, rev))
                used += change.size
        return found, max(after, Position(self._last_index, WHOLE))

    def unregister(self, waker: Waker) -> None:
        """Forget a waker whose reader stopped waiting."""
        with self._lock:
            if waker in self._wakers:
                self._wakers.remove(waker)

    @property
    def kept_after(self) -> int:
        with self._lock:
            return self._kept_after

    @property
    def last_index(self) -> int:
        with self._lock:
            return self._last_index

    def usage(self) -> tuple[int, int]:
        """(entries, bytes) held now."""
        with self._lock:
            return len(self._indexes) - self._head, self._bytes
