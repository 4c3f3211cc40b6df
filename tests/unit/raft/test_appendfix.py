"""Raft §5.3 on the follower: truncate only at a conflict, never acknowledge an unvouched tail."""

from __future__ import annotations

from kvnode.raft.appendfix import reconcile


def log_of(*terms: int, first: int = 1) -> dict[int, int]:
    return {first + i: t for i, t in enumerate(terms)}


def run(local: dict[int, int], prev: int, entries: list[tuple[int, int]], commit: int = 0):
    return reconcile(
        prev_idx=prev,
        prev_term=local.get(prev, -1) if prev in local else 99,
        entries=[(b"c", i, t) for i, t in entries],
        commit_index=commit,
        last_idx=max(local),
        term_at=local.get,
    )


def test_stale_resend_shorter_than_the_log_truncates_nothing() -> None:
    local = log_of(1, 1, 2, 2, 2, 2)  # follower holds 1..6
    out = run(local, 2, [(3, 2), (4, 2)], commit=6)  # leader re-sends only 3..4
    assert out is not None
    assert out.entries == ()  # nothing left to append, so the handler truncates nothing
    assert out.prev_idx == 6  # heartbeat at the follower's last entry
    assert out.ack_limit == 5  # but only 1..4 are acknowledged
    assert out.commit_index == 4  # and nothing past what this message vouched for is committed


def test_first_conflicting_entry_becomes_the_truncation_point() -> None:
    local = log_of(1, 1, 2, 2, 2)
    out = run(local, 2, [(3, 2), (4, 3), (5, 3)])
    assert out is not None
    assert out.prev_idx == 3
    assert out.prev_term == 2
    assert [e[1] for e in out.entries] == [4, 5]
    assert out.ack_limit is None


def test_entries_past_the_end_are_appended_after_the_matching_prefix() -> None:
    local = log_of(1, 1, 2)
    out = run(local, 2, [(3, 2), (4, 2), (5, 2)])
    assert out is not None
    assert (out.prev_idx, [e[1] for e in out.entries]) == (3, [4, 5])


def test_exact_duplicate_becomes_a_heartbeat_at_the_end() -> None:
    local = log_of(1, 1, 2)
    out = run(local, 1, [(2, 1), (3, 2)], commit=3)
    assert out is not None
    assert out.entries == ()
    assert out.prev_idx == 3
    assert out.ack_limit is None
    assert out.commit_index == 3


def test_mismatched_prev_is_left_to_the_handler_to_reject() -> None:
    local = log_of(1, 1, 2)
    assert (
        reconcile(
            prev_idx=3,
            prev_term=7,
            entries=[],
            commit_index=0,
            last_idx=3,
            term_at=local.get,
        )
        is None
    )
