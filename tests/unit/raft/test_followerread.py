"""The follower side of follower reads (``kvnode.raft.followerread``) against a scripted replica
view: what is asked, what is served, and that nothing is served without a confirmed index."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kvnode.raft import followerread
from kvnode.raft.followerread import FollowerReads, Outcome


@dataclass
class View:
    leader: str | None = "L"
    supports: bool = True
    applied: int = 10
    sent: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def fr_leader(self) -> str | None:
        return self.leader

    def fr_leader_supports(self, leader: str, now: float) -> bool:
        return self.supports

    def ri_last_applied(self) -> int:
        return self.applied

    def ri_send(self, peer: str, message: dict[str, Any]) -> None:
        self.sent.append((peer, message))


def asked(view: View, *, now: float = 0.0, deadline: float = 2.0) -> tuple[FollowerReads, list]:
    reads = FollowerReads(view)
    outcomes: list[Outcome] = []
    assert reads.begin(outcomes.append, now=now, deadline=deadline)
    return reads, outcomes


def test_no_leader_or_an_older_leader_asks_nothing() -> None:
    for view in (View(leader=None), View(supports=False)):
        reads = FollowerReads(view)
        assert not reads.begin(lambda o: None, now=0.0, deadline=1.0)
        assert view.sent == []
        assert reads.pending == {}


def test_the_question_carries_an_id_and_the_time_left() -> None:
    view = View()
    asked(view, now=3.0, deadline=4.5)
    assert view.sent == [("L", {"type": followerread.ASK, "id": 1, "ttl": 1.5})]


def test_served_once_applied_reaches_the_confirmed_index() -> None:
    view = View(applied=10)
    reads, outcomes = asked(view)
    reads.on_index("L", followerread.answer(1, 12))
    assert outcomes == []  # confirmed, but this replica has applied only up to 10
    view.applied = 11
    reads.on_tick(0.5)
    assert outcomes == []
    view.applied = 12
    reads.on_tick(0.6)
    assert outcomes == [Outcome.SERVE]
    assert reads.pending == {}
    assert reads.served == 1


def test_an_index_already_applied_serves_at_once() -> None:
    reads, outcomes = asked(View(applied=20))
    reads.on_index("L", followerread.answer(1, 20))
    assert outcomes == [Outcome.SERVE]


def test_a_refusal_declines() -> None:
    reads, outcomes = asked(View())
    reads.on_index("L", followerread.answer(1, None))
    assert outcomes == [Outcome.DECLINED]
    assert reads.declined == 1


def test_no_answer_by_the_deadline_declines() -> None:
    reads, outcomes = asked(View(), deadline=2.0)
    reads.on_tick(1.9)
    assert outcomes == []
    reads.on_tick(2.1)
    assert outcomes == [Outcome.DECLINED]


def test_a_confirmed_index_not_applied_by_the_deadline_declines() -> None:
    reads, outcomes = asked(View(applied=1), deadline=2.0)
    reads.on_index("L", followerread.answer(1, 5))
    reads.on_tick(2.1)
    assert outcomes == [Outcome.DECLINED]


def test_answers_from_another_node_or_to_another_question_are_ignored() -> None:
    reads, outcomes = asked(View(applied=50))
    reads.on_index("X", followerread.answer(1, 3))  # not the leader we asked
    reads.on_index("L", followerread.answer(2, 3))  # not our question
    reads.on_index("L", {"type": followerread.INDEX, "id": "1", "ok": True, "index": 3})
    reads.on_index("L", {"type": followerread.INDEX, "id": 1, "ok": True, "index": "3"})
    assert outcomes == [Outcome.DECLINED]  # the malformed index is a refusal, never a serve
    reads.on_index("L", followerread.answer(1, 3))  # late: that question is over
    assert outcomes == [Outcome.DECLINED]


def test_the_leader_holds_a_question_for_the_time_left_at_most_five_seconds() -> None:
    assert followerread.leader_deadline({"ttl": 1.5}, 10.0) == 11.5
    assert followerread.leader_deadline({"ttl": 60}, 10.0) == 15.0
    assert followerread.leader_deadline({"ttl": -1}, 10.0) == 10.0
    assert followerread.leader_deadline({}, 10.0) == 10.0
    assert followerread.answer(7, None) == {
        "type": followerread.INDEX,
        "id": 7,
        "ok": False,
        "index": None,
    }
