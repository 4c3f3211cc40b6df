"""Durable Raft journal for ``durability=fsync``.

PySyncObj's ``FileJournal`` writes entries into an mmap and never syncs it: an entry survives a
process crash (the page cache does) but not a power loss. In fsync mode every appended entry, and
the term/vote record, is synced before PySyncObj goes on — a follower answers append-entries only
after its journal is on disk, so a majority acknowledgement means a majority of durable copies.

PySyncObj has no journal injection point; ``createJournal`` is looked up in the ``syncobj``
module, so it is wrapped once here and dispatches on a marker type of the journal path.
"""

from __future__ import annotations

import os
from typing import Any

from pysyncobj import journal as pso_journal
from pysyncobj import syncobj as pso_syncobj


class SyncedJournalPath(str):
    """A journal file name that asks for the synced journal."""

    __slots__ = ()


class SyncedFileJournal(pso_journal.FileJournal):  # type: ignore[misc]
    def __init__(self, journal_file: str) -> None:
        super().__init__(str(journal_file))
        self._meta_path = str(journal_file) + ".meta"

    def add(self, command: Any, idx: int, term: int) -> None:
        super().add(command, idx, term)
        self.flush()

    def setCurrentTerm(self, term: int, votedForNodeId: Any) -> None:
        super().setCurrentTerm(term, votedForNodeId)
        _fsync_path(self._meta_path)

    def deleteEntriesFrom(self, entryFrom: int) -> None:
        super().deleteEntriesFrom(entryFrom)
        self.flush()


def _fsync_path(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_original_create_journal = pso_syncobj.createJournal


def _create_journal(journalFile: Any = None) -> Any:
    if isinstance(journalFile, SyncedJournalPath):
        return SyncedFileJournal(journalFile)
    return _original_create_journal(journalFile)


pso_syncobj.createJournal = _create_journal
