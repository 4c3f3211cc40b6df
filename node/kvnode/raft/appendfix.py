"""Raft's append-entries consistency rule, which PySyncObj 0.3.17 gets wrong.

PySyncObj's follower truncates its log at ``prevLogIdx + 1`` whenever it holds any entry past it,
then appends the message's entries. Raft (§5.3) truncates only at the first *conflicting* entry
(same index, different term). The difference loses data: after a stale ``reset`` reply the leader
re-sends from an older index a byte-limited batch that can be *shorter* than what the follower
already acknowledged; the follower drops acknowledged entries while the leader still counts them
toward its majority, and a leader crash in that window loses committed writes. (This is the
"truncating already-applied log entries" CRITICAL log, seen constantly under load.)

``reconcile`` rewrites an incoming append-entries message so PySyncObj's handler does the right
thing: entries the follower already has (same index and term) are dropped from the message; the
first conflicting or new entry becomes the new start (the handler truncates there, which is then a
real conflict, or appends past the end). When every entry already matched, the message becomes a
heartbeat at the follower's last entry — nothing is truncated — while the acknowledgement is
clamped to the last index the message covered and the commit index to the same bound, because
entries past it were not vouched for by this leader (Log Matching only covers the prefix).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

Entry = tuple[Any, int, int]  # (command bytes, index, term) as PySyncObj stores them


@dataclass(frozen=True, slots=True)
class Reconciled:
    prev_idx: int
    prev_term: int
    entries: tuple[Entry, ...]
    commit_index: int
    ack_limit: int | None  # highest next_node_idx the follower may report, or None


def reconcile(
    *,
    prev_idx: int,
    prev_term: int,
    entries: Sequence[Entry],
    commit_index: int,
    last_idx: int,
    term_at: Callable[[int], int | None],
) -> Reconciled | None:
    """The rewritten message, or None to leave it as it is (the handler will reject it)."""
    if term_at(prev_idx) != prev_term:
        return None
    k = 0
    while k < len(entries) and term_at(entries[k][1]) == entries[k][2]:
        k += 1
    if k < len(entries):
        start_prev = prev_term if k == 0 else entries[k - 1][2]
        return Reconciled(
            prev_idx=entries[k][1] - 1,
            prev_term=start_prev,
            entries=tuple(entries[k:]),
            commit_index=commit_index,
            ack_limit=None,
        )
    covered = entries[-1][1] if entries else prev_idx
    last_term = term_at(last_idx)
    if last_idx <= covered or last_term is None:
        return Reconciled(
            prev_idx=covered,
            prev_term=prev_term if not entries else entries[-1][2],
            entries=(),
            commit_index=commit_index,
            ack_limit=None,
        )
    return Reconciled(
        prev_idx=last_idx,
        prev_term=last_term,
        entries=(),
        commit_index=min(commit_index, covered),
        ack_limit=covered + 1,
    )
