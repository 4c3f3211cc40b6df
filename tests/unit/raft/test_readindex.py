"""ReadIndex decisions: a read is served only after a quorum round sent after it arrived, and
only once applied up to the commit index recorded on arrival."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from kvnode.raft.readindex import (
    ACK,
    PROBE,
    Begin,
    Outcome,
    ReadIndexer,
    answer_probe,
    quorum_seq,
)


@dataclass
class View:
    """A leader of term 3 with two peers; every field is what the replica would report."""

    leader: bool = True
    term: int = 3
    commit: int = 10
    applied: int = 10
    terms: dict[int, int] = field(default_factory=lambda: {10: 3, 9: 2})
    others: list[str] = field(default_factory=lambda: ["b", "c"])
    sent: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def ri_is_leader(self) -> bool:
        return self.leader

    def ri_term(self) -> int:
        return self.term

    def ri_commit_index(self) -> int:
        return self.commit

    def ri_last_applied(self) -> int:
        return self.applied

    def term_at(self, idx: int) -> int | None:
        return self.terms.get(idx)

    def ri_others(self) -> list[str]:
        return list(self.others)

    def ri_send(self, peer: str, message: dict[str, Any]) -> None:
        self.sent.append((peer, message))


def setup() -> tuple[View, ReadIndexer, list[Outcome]]:
    view = View()
    return view, ReadIndexer(view, resend_s=0.1), []


def ack(peer: str, seq: int, term: int = 3, ok: bool = True, peer_term: int = 3) -> dict:
    return {"type": ACK, "term": term, "seq": seq, "ok": ok, "peer": peer_term}


def test_quorum_seq_counts_self_and_needs_a_majority() -> None:
    assert quorum_seq({}, [], 1) == math.inf
    assert quorum_seq({"b": 4}, ["b", "c"], 3) == 4
    assert quorum_seq({"b": 4, "c": 7}, ["b", "c"], 3) == 7
    assert quorum_seq({"b": 4, "c": 7, "d": 2}, ["b", "c", "d", "e"], 5) == 4
    assert quorum_seq({"b": 9}, ["b", "c", "d", "e"], 5) == 0
    assert quorum_seq({"x": 9}, ["b", "c"], 3) == 0  # an ack of a non-member counts for nothing


def test_served_after_a_quorum_ack_of_a_round_sent_after_arrival() -> None:
    view, ri, out = setup()
    assert ri.begin(out.append, now=0, deadline=5) is Begin.PENDING
    ri.on_tick(0.0)
    probes = [m for _, m in view.sent]
    assert [p for p, _ in view.sent] == ["b", "c"]
    assert probes[0] == {"type": PROBE, "term": 3, "seq": 1}
    ri.on_tick(0.01)
    assert out == []  # no answer yet
    ri.on_ack("b", ack("b", 1))
    ri.on_tick(0.02)
    assert out == [Outcome.SERVE]


def test_an_ack_of_an_earlier_round_does_not_confirm_a_later_read() -> None:
    view, ri, out = setup()
    ri.begin(lambda o: None, now=0, deadline=5)
    ri.on_tick(0.0)  # round 1 sent
    ri.begin(out.append, now=0.01, deadline=5)  # arrives after round 1 was sent
    ri.on_tick(0.01)  # round 2 sent at once
    assert [m["seq"] for _, m in view.sent] == [1, 1, 2, 2]
    ri.on_ack("b", ack("b", 1))
    ri.on_ack("c", ack("c", 1))
    ri.on_tick(0.02)
    assert out == []
    ri.on_ack("c", ack("c", 2))
    ri.on_tick(0.03)
    assert out == [Outcome.SERVE]


def test_concurrent_reads_share_one_round() -> None:
    view, ri, out = setup()
    for _ in range(50):
        ri.begin(out.append, now=0, deadline=5)
    ri.on_tick(0.0)
    assert len(view.sent) == 2  # one probe per peer for all fifty reads
    ri.on_ack("c", ack("c", 1))
    ri.on_tick(0.01)
    assert out == [Outcome.SERVE] * 50
    assert ri.rounds_sent == 1


def test_waits_for_the_applied_index_to_reach_the_recorded_commit_index() -> None:
    view, ri, out = setup()
    view.applied = 8
    ri.begin(out.append, now=0, deadline=5)
    view.commit, view.terms[12] = 12, 3  # later commits do not move the read's target
    ri.on_tick(0.0)
    ri.on_ack("b", ack("b", 1))
    ri.on_tick(0.01)
    assert out == []
    view.applied = 10
    ri.on_tick(0.02)
    assert out == [Outcome.SERVE]


def test_falls_back_when_not_leader_or_nothing_of_this_term_is_committed() -> None:
    view, ri, out = setup()
    view.leader = False
    assert ri.begin(out.append, now=0, deadline=5) is Begin.FALLBACK
    view.leader, view.commit = True, 9  # the entry at the commit index is of term 2
    assert ri.begin(out.append, now=0, deadline=5) is Begin.FALLBACK
    view.commit = 7  # compacted away: unknown term
    assert ri.begin(out.append, now=0, deadline=5) is Begin.FALLBACK
    assert out == []
    assert view.sent == []


def test_refusal_from_a_later_term_deposes_and_stale_acks_are_ignored() -> None:
    _, ri, out = setup()
    ri.begin(out.append, now=0, deadline=5)
    ri.on_tick(0.0)
    ri.on_ack("b", ack("b", 1, term=2))  # an answer to a probe of our earlier term
    ri.on_tick(0.01)
    assert out == []
    ri.on_ack("c", ack("c", 1, ok=False, peer_term=4))
    assert out == [Outcome.DEPOSED]


def test_loss_of_leadership_or_term_fails_pending_reads() -> None:
    view, ri, out = setup()
    ri.begin(out.append, now=0, deadline=5)
    ri.on_tick(0.0)
    view.term = 4
    ri.on_ack("b", ack("b", 1))
    ri.on_tick(0.01)
    assert out == [Outcome.DEPOSED]


def test_unanswered_round_is_resent_and_reads_expire_at_their_deadline() -> None:
    _, ri, out = setup()
    ri.begin(out.append, now=0, deadline=1.0)
    ri.on_tick(0.0)
    ri.on_tick(0.05)
    assert ri.rounds_sent == 1
    ri.on_tick(0.2)
    assert ri.rounds_sent == 2  # lost probes (a reconnect) are repeated
    ri.on_tick(1.5)
    assert out == [Outcome.EXPIRED]
    assert ri.pending == []


def test_single_voter_serves_without_a_round() -> None:
    view, ri, out = setup()
    view.others = []
    ri.begin(out.append, now=0, deadline=5)
    ri.on_tick(0.0)
    assert out == [Outcome.SERVE]
    assert view.sent == []


def test_a_peer_acknowledges_only_while_not_past_the_probe_term() -> None:
    probe = {"type": PROBE, "term": 5, "seq": 9}
    assert answer_probe(probe, 5) == {"type": ACK, "term": 5, "seq": 9, "ok": True, "peer": 5}
    assert answer_probe(probe, 4)["ok"]  # not caught up with term 5 yet: voted in no later term
    refused = answer_probe(probe, 6)
    assert not refused["ok"]
    assert refused["peer"] == 6
