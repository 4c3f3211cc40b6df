"""The synced journal of ``durability=fsync`` (``raft.compat.SyncedFileJournal``): what it
syncs and when, on a real file. A grouped entry is one journal record, so one sync per group."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from kvnode.core.ops import Put
from kvnode.raft import commands, compat
from kvnode.raft.commands import GroupCmd, WriteCmd
from pysyncobj.journal import FileJournal


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every path ``_fsync_path`` syncs, and every sync of a journal file (as 'msync')."""
    calls: list[str] = []
    real_fsync_path = compat._fsync_path
    real_flush = compat.SyncedFileJournal.flush

    def fsync_path(path: str) -> None:
        calls.append(path)
        real_fsync_path(path)

    def flush(self: compat.SyncedFileJournal) -> None:
        calls.append("msync")
        real_flush(self)

    monkeypatch.setattr(compat, "_fsync_path", fsync_path)
    monkeypatch.setattr(compat.SyncedFileJournal, "flush", flush)
    return calls


def test_one_sync_per_entry_so_one_per_group_and_entries_survive_reopening(
    tmp_path: Path, synced: list[str]
) -> None:
    path = str(tmp_path / "raft.journal")
    journal = compat.SyncedFileJournal(compat.SyncedJournalPath(path))
    group = GroupCmd(reqs=tuple(WriteCmd(ops=(Put(f"k{i}", "v"),), now_ms=1) for i in range(10)))
    journal.add(commands.encode(group), 2, 1)
    assert synced == ["msync"]  # ten client writes, one record, one sync
    journal.add(commands.encode(WriteCmd(ops=(Put("a", "b"),), now_ms=1)), 3, 1)
    assert synced == ["msync", "msync"]
    journal._destroy()
    reopened = FileJournal(path)
    assert [(e[1], e[2]) for e in reopened] == [(2, 1), (3, 1)]
    assert commands.decode(bytes(reopened[0][0])) == group


def test_a_vote_is_on_disk_file_and_rename_before_it_is_acted_on(
    tmp_path: Path, synced: list[str]
) -> None:
    path = str(tmp_path / "raft.journal")
    journal = compat.SyncedFileJournal(compat.SyncedJournalPath(path))
    journal.setCurrentTerm(7, "peer:1")
    assert synced == [path + ".meta", str(tmp_path)]
    assert FileJournal(path).getCurrentTerm() == 7
    assert os.path.exists(path + ".meta")
    assert not os.path.exists(path + ".meta.tmp")
