"""Pre-vote decisions: a vote is promised only when no live leader spoke recently."""

from __future__ import annotations

from kvnode.raft.prevote import LogPosition, Round, grant, term_to_adopt

BASE = dict(
    prospective_term=6,
    candidate_log=LogPosition(10, 5),
    my_term=5,
    my_log=LogPosition(10, 5),
    i_am_leader=False,
    since_leader_contact_s=5.0,
    min_election_timeout_s=1.0,
)


def test_granted_when_leader_silent_and_log_up_to_date() -> None:
    assert grant(**BASE)  # type: ignore[arg-type]


def test_refused_while_a_leader_was_heard_within_the_election_timeout() -> None:
    assert not grant(**{**BASE, "since_leader_contact_s": 0.3})  # type: ignore[arg-type]


def test_refused_by_a_leader() -> None:
    assert not grant(**{**BASE, "i_am_leader": True})  # type: ignore[arg-type]


def test_refused_when_not_past_my_term() -> None:
    assert not grant(**{**BASE, "my_term": 6})  # type: ignore[arg-type]


def test_log_comparison_is_raft_up_to_date_rule() -> None:
    assert not grant(**{**BASE, "candidate_log": LogPosition(9, 5)})  # type: ignore[arg-type]
    assert not grant(**{**BASE, "candidate_log": LogPosition(50, 4)})  # type: ignore[arg-type]
    assert grant(**{**BASE, "candidate_log": LogPosition(3, 6), "prospective_term": 7})  # type: ignore[arg-type]


def test_round_needs_a_strict_majority() -> None:
    r = Round.start(current_term=5, self_id="a", voters=4)
    assert r.term == 6
    assert not r.won
    r = r.with_grant("b")
    assert not r.won  # 2 of 4
    r = r.with_grant("b")
    assert not r.won  # the same voter twice counts once
    assert r.with_grant("c").won
    assert Round.start(current_term=0, self_id="a", voters=1).won


def test_a_refusal_from_a_server_past_our_term_is_adopted() -> None:
    args = dict(granted=False, responder_term=3, my_term=2, i_am_leader=False)
    assert term_to_adopt(**args) == 3  # type: ignore[arg-type]
    assert term_to_adopt(**{**args, "granted": True}) is None  # type: ignore[arg-type]
    assert term_to_adopt(**{**args, "responder_term": 2}) is None  # type: ignore[arg-type]
    assert term_to_adopt(**{**args, "responder_term": 1}) is None  # type: ignore[arg-type]
    assert term_to_adopt(**{**args, "responder_term": None}) is None  # type: ignore[arg-type]
    assert term_to_adopt(**{**args, "i_am_leader": True}) is None  # type: ignore[arg-type]
