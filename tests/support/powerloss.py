"""What a power loss may do to a node's Raft journals in ``durability=fsync``: every byte a
journal gained after its last WAL base (``kvnode.raft.wal``) was never synced through the
journal file itself, so the kernel may have lost it."""

from __future__ import annotations

from pathlib import Path

from kvnode.raft import wal


def last_bases(data_dir: str | Path) -> dict[str, wal.Base]:
    """The last base of every open journal named in the data directory's WAL segments."""
    return {n: h.base for n, h in wal.histories(str(data_dir)).items() if h.base is not None}


def lose_unsynced_journal_pages(data_dir: str | Path) -> dict[str, int]:
    """Zero every journal's bytes after its last WAL base; the entries lost per journal."""
    lost = {}
    for name, base in last_bases(data_dir).items():
        path = Path(data_dir, name)
        data = path.read_bytes()
        before = len(wal.read_journal(data)[0])
        with open(path, "r+b") as f:
            f.seek(base.offset)
            f.write(bytes(len(data) - base.offset))
        lost[name] = before - len(wal.read_journal(path.read_bytes())[0])
    return lost
