"""Snapshot dumps written off the shared ticker thread.

PySyncObj runs a custom serializer synchronously in the tick, and one ticker drives every group
of the node: dumping a 1 M-key partition (~2 s) stopped the heartbeats of all of them for longer
than the election timeout. PySyncObj's ``serializeChecker`` hook allows an asynchronous dump; its
protocol, as 0.3.17 implements it (``pysyncobj/serializer.py``, research/libraries.md §A7):

1. ``serializer(tmp, raft_data)`` is called in the tick. Here it only captures what must be
   consistent — the LevelDB snapshot (O(1)) and the header with the Raft position and the store's
   applied index — and hands the writing to a worker thread that writes ``<dump>.bg``.
2. Right after it returns, PySyncObj renames ``tmp`` over the dump. ``tmp`` is made sure not to
   exist, so that rename fails (PySyncObj swallows it) and nothing half-written is installed.
3. PySyncObj polls ``serializeChecker`` every tick: SERIALIZING while the worker runs (log
   compaction and snapshot sends to followers wait), then SUCCESS once — the checker, in the
   ticker thread, moves ``<dump>.bg`` into place first — and PySyncObj truncates the journal.

Every rename of the dump file thus happens in the ticker thread, ordered with PySyncObj's own
install of a snapshot received from the leader; ``cancel`` (called when one is installed)
discards a dump in flight so an older state never replaces a newer one. A failed dump is
reported as FAILED after a back-off, so a persistent failure does not spin a thread per tick.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator

from pysyncobj import SERIALIZER_STATE

from kvnode.core import files
from kvnode.storage import snapshot

log = logging.getLogger(__name__)

RETRY_AFTER_FAILURE_S = 30.0


class DumpCancelled(Exception):
    """The dump in flight was discarded (replica closing or a newer snapshot installed)."""


class BackgroundDump:
    """One group's snapshot writer: ``start`` and ``check`` run in the ticker thread."""

    def __init__(self, *, dump_path: str, label: str) -> None:
        self._dump_path = dump_path
        self._bg_path = dump_path + ".bg"
        self._label = label
        self._thread: threading.Thread | None = None
        self._cancel = threading.Event()
        self._outcome: str | None = None  # set by the worker: "ok" or "failed"
        self._failed_until = 0.0
        self.last_duration_s: float | None = None

    def start(self, tmp_path: str, header: bytes, items: Iterator[tuple[bytes, bytes]]) -> None:
        """Begin writing a dump of ``items`` (already captured) in a worker thread."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_path)  # PySyncObj renames it over the dump right after we return
        self._cancel = threading.Event()
        self._outcome = None
        self._thread = threading.Thread(
            target=self._write,
            args=(header, items, self._cancel),
            name=f"dump-{self._label}",
            daemon=True,
        )
        self._thread.start()

    def _write(
        self, header: bytes, items: Iterator[tuple[bytes, bytes]], cancel: threading.Event
    ) -> None:
        started = time.monotonic()
        try:
            info = snapshot.write_snapshot(
                self._bg_path, header=header, items=_cancellable(items, cancel)
            )
        except DumpCancelled:
            log.info("%s: snapshot dump cancelled", self._label)
            self._outcome = "failed"
            return
        except Exception:
            log.exception("%s: snapshot dump failed", self._label)
            self._outcome = "failed"
            return
        self.last_duration_s = time.monotonic() - started
        log.info(
            "%s: snapshot written in the background (%d items, %d bytes, %.2fs)",
            self._label,
            info.count,
            info.size_bytes,
            self.last_duration_s,
        )
        self._outcome = "ok"

    def check(self) -> int:
        """PySyncObj's ``serializeChecker`` (ticker thread)."""
        thread = self._thread
        if thread is None:
            if self._failed_until:
                if time.monotonic() < self._failed_until:
                    return int(SERIALIZER_STATE.SERIALIZING)
                self._failed_until = 0.0
                return int(SERIALIZER_STATE.FAILED)
            return int(SERIALIZER_STATE.NOT_SERIALIZING)
        if thread.is_alive():
            return int(SERIALIZER_STATE.SERIALIZING)
        self._thread = None
        if self._outcome == "ok" and not self._cancel.is_set():
            try:
                os.replace(self._bg_path, self._dump_path)
                files.fsync_dir(os.path.dirname(os.path.abspath(self._dump_path)))
                return int(SERIALIZER_STATE.SUCCESS)
            except OSError:
                log.exception("%s: could not install the dump", self._label)
        if self._cancel.is_set():
            return int(SERIALIZER_STATE.FAILED)  # resets PySyncObj's state; nothing to wait for
        self._failed_until = time.monotonic() + RETRY_AFTER_FAILURE_S
        return int(SERIALIZER_STATE.SERIALIZING)

    @property
    def busy(self) -> bool:
        """A dump is being written, or PySyncObj has not yet been told how the last ended."""
        return self._thread is not None or bool(self._failed_until)

    def cancel(self) -> None:
        """Discard the dump in flight, if any (a newer snapshot is being installed)."""
        self._cancel.set()

    def close(self, timeout: float = 10.0) -> None:
        """Stop the worker before the store closes under it."""
        self._cancel.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                log.error("%s: snapshot dump did not stop within %.0fs", self._label, timeout)


def _cancellable(
    items: Iterable[tuple[bytes, bytes]], cancel: threading.Event
) -> Iterator[tuple[bytes, bytes]]:
    for n, item in enumerate(items):
        if n % 4096 == 0 and cancel.is_set():
            raise DumpCancelled
        yield item
