"""Every file journal rewrites its meta file only when the commit index changed
(``compat.QuietFileJournal``): an idle follower, told the same commit index by each heartbeat,
writes nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from kvnode.raft import compat
from pysyncobj.journal import FileJournal, MetaStorer
from pysyncobj.syncobj import createJournal


@pytest.fixture
def stores(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    written: list[int] = []
    real = MetaStorer.storeMeta

    def store(self: MetaStorer, meta: dict) -> None:
        written.append(meta.get("raftCommitIndex", 0))
        real(self, meta)

    monkeypatch.setattr(MetaStorer, "storeMeta", store)
    return written


@pytest.mark.parametrize("synced", [False, True])
def test_unchanged_commit_index_is_not_rewritten(
    tmp_path: Path, stores: list[int], synced: bool
) -> None:
    path = str(tmp_path / "raft.journal")
    journal = createJournal(compat.SyncedJournalPath(path) if synced else path)
    assert isinstance(journal, compat.QuietFileJournal)
    journal.setRaftCommitIndex(5)
    journal.onOneSecondTimer()
    assert stores == [5]
    for _ in range(3):  # heartbeats repeating the same commit index, then the timer
        journal.setRaftCommitIndex(5)
        journal.onOneSecondTimer()
    assert stores == [5]
    journal.setRaftCommitIndex(9)
    journal.onOneSecondTimer()
    assert stores == [5, 9]
    assert FileJournal(path).getRaftCommitIndex() == 9
    assert os.path.exists(path + ".meta")


def test_no_journal_file_still_means_a_memory_journal() -> None:
    assert not isinstance(createJournal(None), FileJournal)
