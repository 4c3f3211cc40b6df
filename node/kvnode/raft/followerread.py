"""Follower reads by ReadIndex (Raft thesis §6.4, last paragraph): a strong read served by a
follower's own store, with no log entry and no forwarding of the request.

When a strong read arrives at a follower, the follower asks its leader for a read index
(``ri_ask``). The leader treats the question as one of its own ReadIndex reads
(``kvnode.raft.readindex``): it records its commit index C when the question arrives, confirms
with a quorum probe round sent after that that it still leads, and answers ``ri_index`` with C.
The follower serves the read once its own applied index reaches C. Every write acknowledged before
the read arrived at the follower was acknowledged before the question reached the leader, so it is
at or below C (the leader-side argument), and the follower's applied prefix is a prefix of the one
committed log; the whole argument is in node/DESIGN.md ("Consistency").

Anything else — no known leader, a leader that does not list the feature, a refusal (the leader
was deposed or has nothing of its term committed), no answer in time — is ``DECLINED``: the
caller forwards the read to the leader, as it did before follower reads existed. Nothing here
ever serves a read the leader did not confirm.

``FollowerReads`` is the state of one replica, driven only from the ticker thread (registration,
answers and ticks), like ``ReadIndexer``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

ASK = "ri_ask"
INDEX = "ri_index"
FEATURE = "follower_read"
_LONGEST_WAIT_S = 5.0  # a leader never holds a question longer than this, whatever it asks


class Outcome(enum.Enum):
    SERVE = "serve"  # the leader confirmed a read index and this replica applied up to it
    DECLINED = "declined"  # no confirmed index (or not in time): forward the read instead


class FollowerView(Protocol):
    """What the follower side reads of its replica (ticker thread)."""

    def fr_leader(self) -> str | None: ...
    def fr_leader_supports(self, leader: str, now: float) -> bool: ...
    def ri_last_applied(self) -> int: ...
    def ri_send(self, peer: str, message: dict[str, Any]) -> None: ...


@dataclass(slots=True)
class _Wait:
    leader: str
    deadline: float
    done: Callable[[Outcome], None]
    index: int | None = None  # the leader's confirmed read index, once answered


@dataclass(slots=True)
class FollowerReads:
    """Read-index questions this replica asked its leader, and the reads waiting on them."""

    view: FollowerView
    next_id: int = 1
    pending: dict[int, _Wait] = field(default_factory=dict)
    asked: int = 0
    served: int = 0
    declined: int = 0

    def begin(self, done: Callable[[Outcome], None], *, now: float, deadline: float) -> bool:
        """Ask the leader for a read index; False (nothing asked, ``done`` never runs) when
        there is no leader to ask or it does not answer such questions."""
        leader = self.view.fr_leader()
        if leader is None or not self.view.fr_leader_supports(leader, now):
            return False
        rid = self.next_id
        self.next_id += 1
        self.pending[rid] = _Wait(leader, deadline, done)
        self.asked += 1
        self.view.ri_send(leader, {"type": ASK, "id": rid, "ttl": max(0.0, deadline - now)})
        return True

    def on_index(self, peer: str, message: Mapping[str, Any]) -> None:
        """The leader's answer to question ``id``: a confirmed index, or a refusal."""
        wait = self.pending.get(_int(message.get("id")))
        if wait is None or wait.leader != peer:
            return  # answered late (expired), or by a node we did not ask
        index = message.get("index")
        if not message.get("ok") or not isinstance(index, int):
            self._end(_int(message.get("id")), Outcome.DECLINED)
            return
        wait.index = index
        self.on_tick_one(_int(message.get("id")))

    def on_tick(self, now: float) -> None:
        for rid in list(self.pending):
            wait = self.pending[rid]
            if not self.on_tick_one(rid) and now > wait.deadline:
                self._end(rid, Outcome.DECLINED)

    def on_tick_one(self, rid: int) -> bool:
        wait = self.pending[rid]
        if wait.index is not None and self.view.ri_last_applied() >= wait.index:
            self._end(rid, Outcome.SERVE)
            return True
        return False

    def _end(self, rid: int, outcome: Outcome) -> None:
        wait = self.pending.pop(rid)
        if outcome is Outcome.SERVE:
            self.served += 1
        else:
            self.declined += 1
        wait.done(outcome)


def leader_deadline(message: Mapping[str, Any], now: float) -> float:
    """How long a leader works on a question: the asker's time left, at most 5 s."""
    ttl = message.get("ttl")
    left = float(ttl) if isinstance(ttl, (int, float)) and ttl >= 0 else 0.0
    return now + min(left, _LONGEST_WAIT_S)


def answer(rid: Any, index: int | None) -> dict[str, Any]:
    """The leader's answer: ``index`` confirmed by a quorum round, or None for a refusal."""
    return {"type": INDEX, "id": rid, "ok": index is not None, "index": index}


def _int(value: Any) -> int:
    return value if isinstance(value, int) else -1
