"""The node WAL of ``durability=fsync`` (``kvnode.raft.wal``) with the synced journal on real
files: what recovery rebuilds after the journal's unsynced pages are lost, and what it leaves."""

from __future__ import annotations

import os
from pathlib import Path

from kvnode.raft import compat, wal
from pysyncobj.journal import FileJournal

from tests.support.powerloss import lose_unsynced_journal_pages as lose_unsynced_pages


def entries(journal: FileJournal) -> list[tuple[bytes, int, int]]:
    return [(bytes(c), i, t) for c, i, t in journal]


def open_journal(
    data_dir: Path, node_wal: wal.NodeWal, name: str = "p0"
) -> compat.SyncedFileJournal:
    os.makedirs(data_dir / name, exist_ok=True)
    path = str(data_dir / name / "raft.journal")
    return compat.SyncedFileJournal(compat.SyncedJournalPath.of(path, node_wal))


def after_a_power_loss(tmp_path: Path, name: str = "p0") -> list[tuple[bytes, int, int]]:
    """Lose every journal's unsynced pages, recover, and read journal ``name`` back."""
    lose_unsynced_pages(tmp_path)
    wal.recover(str(tmp_path))
    return entries(FileJournal(str(tmp_path / name / "raft.journal")))


def test_journal_bytes_are_what_pysyncobj_reads_and_writes(tmp_path: Path) -> None:
    path = str(tmp_path / "j")
    journal = FileJournal(path)
    for i in range(1, 6):
        journal.add(b"cmd%d" % i, i, 1)
    journal._destroy()
    data = Path(path).read_bytes()
    parsed, _end = wal.read_journal(data)
    assert parsed == [(b"cmd%d" % i, i, 1) for i in range(1, 6)]
    rewritten, end2 = wal.journal_bytes(data[: wal.IDENTITY_SIZE], parsed[2:])
    Path(path).write_bytes(rewritten)
    assert entries(FileJournal(path)) == parsed[2:]
    assert wal.read_journal(rewritten) == (parsed[2:], end2)


def test_read_journal_stops_at_a_damaged_record(tmp_path: Path) -> None:
    data, _end = wal.journal_bytes(b"X" * wal.IDENTITY_SIZE, [(b"a" * 50, i, 1) for i in (1, 2, 3)])
    broken = bytearray(data)
    broken[wal.FIRST_RECORD_OFFSET + 80] ^= 0xFF  # inside the second record's size suffix area
    parsed, _ = wal.read_journal(bytes(broken))
    assert [e[1] for e in parsed] == [1]


def test_synced_changes_come_back_after_the_journal_lost_its_unsynced_pages(tmp_path: Path) -> None:
    node_wal = wal.NodeWal(str(tmp_path))
    journal = open_journal(tmp_path, node_wal)
    for i in range(1, 11):
        journal.add(b"v%d" % i + b"x" * 300, i, 1)
    node_wal.sync()  # what the ticker does before any message about them leaves
    journal.add(b"never-synced", 11, 1)  # recorded, not synced: nobody heard of it
    expected = entries(journal)[:10]
    del journal  # kill -9: no close
    assert lose_unsynced_pages(tmp_path) == {"p0/raft.journal": 11}
    assert wal.read_journal(Path(tmp_path, "p0/raft.journal").read_bytes())[0] == []
    done = wal.recover(str(tmp_path))
    assert done.rebuilt == ["p0/raft.journal"]
    assert entries(FileJournal(str(tmp_path / "p0" / "raft.journal"))) == expected
    assert wal.segments(str(tmp_path / wal.DIR)) == []  # consumed


def test_a_truncated_tail_and_its_replacement_are_replayed_in_order(tmp_path: Path) -> None:
    node_wal = wal.NodeWal(str(tmp_path))
    journal = open_journal(tmp_path, node_wal)
    for i in range(1, 6):
        journal.add(b"t1-%d" % i, i, 1)
    node_wal.sync()
    journal.deleteEntriesFrom(3)  # a new leader's entries conflict from index 4
    journal.add(b"t2-4", 4, 2)
    journal.add(b"t2-5", 5, 2)
    node_wal.sync()
    expected = entries(journal)
    assert [(i, t) for _c, i, t in expected] == [(1, 1), (2, 1), (3, 1), (4, 2), (5, 2)]
    del journal
    assert after_a_power_loss(tmp_path) == expected


def test_compaction_rewrites_the_file_atomically_and_recovery_starts_from_it(
    tmp_path: Path,
) -> None:
    node_wal = wal.NodeWal(str(tmp_path))
    journal = open_journal(tmp_path, node_wal)
    for i in range(1, 21):
        journal.add(b"c%d" % i, i, 1)
    node_wal.sync()
    journal.deleteEntriesTo(15)  # compaction after a snapshot: keep 16..20
    assert not node_wal.dirty  # the new base is on disk before anything else happens
    journal.add(b"c21", 21, 1)
    node_wal.sync()
    expected = entries(journal)
    assert [i for _c, i, _t in expected] == [16, 17, 18, 19, 20, 21]
    del journal
    assert after_a_power_loss(tmp_path) == expected


def _eight_entries(tmp_path: Path) -> tuple[wal.NodeWal, compat.SyncedFileJournal, str]:
    node_wal = wal.NodeWal(str(tmp_path))
    journal = open_journal(tmp_path, node_wal)
    for i in range(1, 9):
        journal.add(b"r%d" % i, i, 1)
    node_wal.sync()
    return node_wal, journal, str(tmp_path / "p0" / "raft.journal")


def test_a_rewrite_whose_base_reached_the_wal_is_finished_by_recovery(tmp_path: Path) -> None:
    """A crash between the WAL sync of a rewritten journal's base and the rename."""
    node_wal, journal, path = _eight_entries(tmp_path)
    identity = Path(path).read_bytes()[: wal.IDENTITY_SIZE]
    kept = entries(journal)[5:]
    end = wal.prepare_journal(path, identity, kept)
    node_wal.base("p0/raft.journal", wal.Base.of(kept, end))
    node_wal.sync()
    del journal
    assert after_a_power_loss(tmp_path) == kept
    assert not os.path.exists(path + wal.REWRITE_SUFFIX)


def test_a_rewrite_whose_base_never_reached_the_wal_is_discarded(tmp_path: Path) -> None:
    """A crash before: the old journal and the WAL's changes stand (an empty base at open
    would otherwise match any file)."""
    _node_wal, journal, path = _eight_entries(tmp_path)
    identity = Path(path).read_bytes()[: wal.IDENTITY_SIZE]
    expected = entries(journal)
    wal.prepare_journal(path, identity, expected[5:])
    del journal
    assert after_a_power_loss(tmp_path) == expected
    assert not os.path.exists(path + wal.REWRITE_SUFFIX)


def test_a_torn_wal_tail_is_dropped_and_what_was_synced_before_it_is_kept(tmp_path: Path) -> None:
    node_wal = wal.NodeWal(str(tmp_path))
    journal = open_journal(tmp_path, node_wal)
    for i in range(1, 4):
        journal.add(b"w%d" % i, i, 1)
    node_wal.sync()
    expected = entries(journal)
    journal.add(b"w4" * 100, 4, 1)
    node_wal.sync()
    ((_seq, seg),) = wal.segments(str(tmp_path / wal.DIR))
    size = os.path.getsize(seg)
    os.truncate(seg, size - 50)  # the last record never fully reached the disk
    del journal
    assert after_a_power_loss(tmp_path) == expected


def test_rotation_keeps_a_base_of_every_open_journal_and_deletes_old_segments(
    tmp_path: Path,
) -> None:
    node_wal = wal.NodeWal(str(tmp_path), segment_bytes=4096)
    a, b = open_journal(tmp_path, node_wal, "p0"), open_journal(tmp_path, node_wal, "p1")
    for i in range(1, 40):
        a.add(b"a" * 200, i, 1)
        b.add(b"b" * 200, i, 1)
        node_wal.sync()
        node_wal.maybe_rotate()
    segs = wal.segments(str(tmp_path / wal.DIR))
    assert len(segs) == 1, segs
    assert segs[0][0] > 1, segs  # rotated at least once
    expected = {"p0": entries(a), "p1": entries(b)}
    del a, b
    lose_unsynced_pages(tmp_path)
    wal.recover(str(tmp_path))
    for name, want in expected.items():
        assert entries(FileJournal(str(tmp_path / name / "raft.journal"))) == want, name


def test_a_closed_journal_is_used_as_it_is_and_a_dropped_one_is_skipped(tmp_path: Path) -> None:
    node_wal = wal.NodeWal(str(tmp_path))
    journal = open_journal(tmp_path, node_wal)
    journal.add(b"old", 1, 1)
    node_wal.sync()
    journal._destroy()  # closed: file synced, CLOSE recorded and synced
    path = tmp_path / "p0" / "raft.journal"
    path.unlink()  # the replica is dropped, and a new one starts empty at the same place
    fresh = FileJournal(str(path))
    fresh._destroy()
    gone = open_journal(tmp_path, node_wal, "p1")
    gone.add(b"x", 1, 1)
    node_wal.sync()
    del gone
    os.unlink(tmp_path / "p1" / "raft.journal")
    done = wal.recover(str(tmp_path))
    assert entries(FileJournal(str(path))) == []
    assert done.missing == ["p1/raft.journal"]
    assert done.synced == ["p0/raft.journal"]


def test_a_journal_that_matches_neither_its_base_nor_a_pending_rewrite_is_kept_as_it_is(
    tmp_path: Path,
) -> None:
    """Not a state the node produces (a rewrite's base reaches the WAL before its rename); if a
    file were replaced behind the node's back, recovery keeps it rather than replay the WAL's
    changes onto entries they were not made to."""
    node_wal, journal, path = _eight_entries(tmp_path)
    node_wal.rotate()  # a base naming the eight entries (an empty base matches any file)
    identity = Path(path).read_bytes()[: wal.IDENTITY_SIZE]
    foreign = [(b"other", 40, 3), (b"other", 41, 3)]
    del journal
    wal.write_journal(path, identity, foreign)
    done = wal.recover(str(tmp_path))
    assert done.replaced == ["p0/raft.journal"]
    assert entries(FileJournal(path)) == foreign


def test_a_header_pointing_past_the_surviving_records_is_rewritten(tmp_path: Path) -> None:
    """The header's end offset reached the disk, the records it counts did not, and the WAL
    never synced them: the journal is rewritten to what survives (PySyncObj would otherwise
    read zeros as records)."""
    node_wal = wal.NodeWal(str(tmp_path))
    journal = open_journal(tmp_path, node_wal)
    journal.add(b"kept", 1, 1)
    node_wal.rotate()  # a base after "kept": the file up to it is synced
    journal.add(b"lost", 2, 1)  # never synced
    expected = entries(journal)[:1]
    del journal
    lose_unsynced_pages(tmp_path)
    path = str(tmp_path / "p0" / "raft.journal")
    done = wal.recover(str(tmp_path))
    assert done.rebuilt == ["p0/raft.journal"]
    assert entries(FileJournal(path)) == expected
