"""``MemoryStore``: the ``PartitionStore`` contract over a dict, for unit tests of upper layers.

It is deliberately simple (sorts on every scan) but keeps the exact semantics of
``LevelDBStore``: same key order, same dump items, same digest, same validation, so a test that
passes on it says something about production. Not for production data: nothing is persisted.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping

from kvnode.core import model
from kvnode.storage import engine, snapshot


class MemoryStore:
    """A thread-safe in-memory partition replica (one lock around every operation)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._data: dict[str, model.Record] = {}
        self._applied = 0
        self._bytes = 0

    def applied_index(self) -> int:
        return self._applied

    def get(self, key: str) -> model.Record | None:
        with self._lock:
            return self._data.get(key)

    def scan(
        self, *, prefix: str = "", start_after: str | None = None, limit: int
    ) -> list[tuple[str, model.Record]]:
        pb = engine.key_bytes(prefix)
        after = None if start_after is None else engine.key_bytes(start_after)
        with self._lock:
            items = [(engine.key_bytes(k), k, r) for k, r in self._data.items()]
        items.sort(key=lambda t: t[0])
        out: list[tuple[str, model.Record]] = []
        for kb, k, r in items:
            if len(out) >= limit:
                break
            if kb.startswith(pb) and (after is None or kb > after):
                out.append((k, r))
        return out

    def expired_keys(self, now_ms: int, limit: int) -> list[str]:
        with self._lock:
            due = [
                (r.expires_at_ms, engine.key_bytes(k), k)
                for k, r in self._data.items()
                if r.expires_at_ms is not None and r.expires_at_ms <= now_ms
            ]
        due.sort(key=lambda t: (t[0], t[1]))
        return [k for _, _, k in due[: max(limit, 0)]]

    def next_expiry_ms(self) -> int | None:
        with self._lock:
            due = [r.expires_at_ms for r in self._data.values() if r.expires_at_ms is not None]
        return min(due) if due else None

    def apply(
        self, index: int, *, puts: Mapping[str, model.Record], deletes: Iterable[str]
    ) -> None:
        dels = list(dict.fromkeys(deletes))
        with self._lock:
            engine.check_apply(self._applied, index, puts, dels)
            for rec in puts.values():
                engine.encode_record(rec)  # refuse unrepresentable records, as LevelDB does
            for key in dels:
                old = self._data.pop(key, None)
                if old is not None:
                    self._bytes -= _size(key, old)
            for key, rec in puts.items():
                old = self._data.get(key)
                if old is not None:
                    self._bytes -= _size(key, old)
                self._data[key] = rec
                self._bytes += _size(key, rec)
            self._applied = index

    def stats(self) -> engine.StoreStats:
        with self._lock:
            return engine.StoreStats(
                keys=len(self._data), bytes=self._bytes, applied_index=self._applied
            )

    def digest(self) -> str:
        d = engine.RecordDigest()
        for kb, enc in self._record_items():
            d.add(kb, enc)
        return d.hexdigest()

    def _record_items(self) -> list[tuple[bytes, bytes]]:
        with self._lock:
            items = [(engine.key_bytes(k), engine.encode_record(r)) for k, r in self._data.items()]
        items.sort()
        return items

    def iter_dump(self) -> Iterator[tuple[bytes, bytes]]:
        with self._lock:
            applied = self._applied
            data = dict(self._data)
        items: list[tuple[bytes, bytes]] = [(engine.APPLIED_KEY, engine.pack_u64(applied))]
        for k, r in data.items():
            kb = engine.key_bytes(k)
            items.append((engine.DATA_PREFIX + kb, engine.encode_record(r)))
            if r.expires_at_ms is not None:
                items.append((engine.expiry_item_key(r.expires_at_ms, kb), b""))
        items.sort()
        return iter(items)

    def load_dump(self, items: Iterable[tuple[bytes, bytes]]) -> None:
        data: dict[str, model.Record] = {}
        applied = 0
        for key, value in engine.ordered_items(items):
            item = engine.parse_dump_item(key, value)
            if item.record is not None:
                data[engine.key_str(item.key)] = item.record
            elif item.kind == "applied":
                applied = item.applied
        nbytes = sum(_size(k, r) for k, r in data.items())
        with self._lock:
            self._data, self._applied, self._bytes = data, applied, nbytes

    def load_snapshot(self, path: str) -> bytes:
        return snapshot.load_file(path, self.load_dump)

    def close(self) -> None:
        """Nothing to release; the content stays readable (tests may inspect it)."""


def _size(key: str, rec: model.Record) -> int:
    return len(engine.key_bytes(key)) + len(rec.value.encode("utf-8", "surrogatepass"))
