"""What a power loss may do to a node's Raft journals in ``durability=fsync``: every byte a
journal gained after its last WAL base (``kvnode.raft.wal``) was never synced through the
journal file itself, so the kernel may have lost it."""

from __future__ import annotations

from pathlib import Path

from kvnode.raft import wal


def last_bases(data_dir: str | Path) -> dict[str, wal.Base]:
    """The last base of every journal named in the data directory's WAL segments."""
    bases: dict[str, wal.Base] = {}
    for _seq, segment in wal.segments(str(Path(data_dir, wal.DIR))):
        for op, name, body in wal.records(Path(segment).read_bytes()):
            if op == wal.BASE:
                v = wal._BASE.unpack(body)
                bases[name] = wal.Base(v[0], v[1], (v[2], v[3]), (v[4], v[5]))
            elif op == wal.CLOSE:
                bases.pop(name, None)
    return bases


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
