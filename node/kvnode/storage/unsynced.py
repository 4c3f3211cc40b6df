"""Partition stores are written without sync; a host restart that may have lost some of those
writes rebuilds them from the Raft snapshot and journal.

A replica's LevelDB store is a cache of its Raft state: everything in it is in the replica's Raft
snapshot file (fsynced before it replaces the previous one and before the journal is truncated)
plus the journal entries after it. So applies are not synced, in either durability mode: what a
write acknowledges is the journal (synced per entry with ``durability=fsync``). An unsynced write
that returned is in the kernel's page cache, which survives the death of the process (kill -9,
OOM): only a restart of the host's kernel (power loss, kernel crash, a volume moved to another
host) can lose it, and then LevelDB's recovery may skip a damaged record in the middle of its log
and go on, leaving a store that holds a later apply without an earlier one while its applied
index claims both — a divergence nothing would repair.

Hence a marker file in the data directory naming the kernel boot (``/proc/sys/kernel/random/
boot_id``) under which stores were last written without a clean stop:
- at start, before any store opens: a marker of *another* boot means the host restarted while
  stores had unsynced writes; every store is then destroyed as it is first opened, and Raft loads
  the snapshot and re-applies the journal into the empty store (``registry``/``replica`` do that
  for any store behind its snapshot). Then the marker is (re)written with the current boot;
- at a clean stop, once every store was closed with a final sync write, the marker is removed:
  a host restart after that rebuilds nothing.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TypeVar

from kvnode.core import files

log = logging.getLogger(__name__)

BOOT_ID_FILE = "/proc/sys/kernel/random/boot_id"
MARKER = "stores-unsynced"
S = TypeVar("S")


def current_boot_id(path: str = BOOT_ID_FILE) -> str:
    with open(path) as f:
        return f.read().strip()


def must_rebuild(marker: str | None, boot_id: str) -> bool:
    """Whether stores last written under ``marker``'s boot may have lost writes now."""
    return marker is not None and marker != boot_id


class UnsyncedStores:
    """The marker of one data directory, and the stores rebuilt in this process."""

    def __init__(self, data_dir: str, *, boot_id: str, rebuild: bool) -> None:
        self._data_dir = data_dir
        self._boot_id = boot_id
        self.rebuild = rebuild
        self._opened: set[str] = set()
        self.rebuilt: list[str] = []

    @classmethod
    def begin(cls, data_dir: str, *, boot_id: str | None = None) -> UnsyncedStores:
        """Decide whether stores must be rebuilt, then mark the directory for this boot (before
        any store is opened, so a crash from now on is detected at the next start)."""
        boot = boot_id if boot_id is not None else current_boot_id()
        path = os.path.join(data_dir, MARKER)
        try:
            with open(path) as f:
                marker: str | None = f.read().strip()
        except FileNotFoundError:
            marker = None
        rebuild = must_rebuild(marker, boot)
        if rebuild:
            log.warning(
                "%s: the host restarted (boot %s, now %s) while stores had unsynced writes: every "
                "partition store is rebuilt from its Raft snapshot and journal as it opens",
                data_dir,
                marker,
                boot,
            )
        os.makedirs(data_dir, exist_ok=True)
        files.write_atomic(path, boot.encode())
        return cls(data_dir, boot_id=boot, rebuild=rebuild)

    def open(self, path: str, opener: Callable[[str], S], destroy: Callable[[str], None]) -> S:
        """``opener(path)``; the first open of ``path`` in this process destroys it first when
        the stores must be rebuilt."""
        if self.rebuild and path not in self._opened:
            destroy(path)
            self.rebuilt.append(path)
            log.warning("store %s: destroyed, Raft rebuilds it from snapshot and journal", path)
        self._opened.add(path)
        return opener(path)

    def end(self) -> None:
        """Every store was closed with a sync: nothing unsynced is left to lose."""
        os.remove(os.path.join(self._data_dir, MARKER))
        files.fsync_dir(self._data_dir)
