"""ReadIndex (Raft thesis §6.4): strong reads confirmed by a quorum round, with no log entry.

A strong read on the leader of term T records the commit index C, then waits for a *probe round*
sent after the read arrived to be acknowledged by a majority (itself included), then waits until
its applied index reaches C. Probes are term-stamped messages (``ri_probe``) that a peer answers
``ok`` only while its own term is not above T; a majority of such answers, each given after the
read arrived, proves no leader of a higher term had been elected when the read arrived (its
voters would have had a higher term before, and terms never decrease), so every write
acknowledged before the read began is at or below C. A leader that has not committed an entry of
its own term yet does not know the latest commit index: it answers ``FALLBACK`` and the caller uses
the log barrier (``kvnode.raft.barriers``). The whole argument is in node/DESIGN.md.

Reads share rounds: every read registered before the next probe is sent waits for that probe's
sequence number (``seq``), and an acknowledgement of a later round also confirms earlier ones.
``quorum_seq`` is the pure decision; ``ReadIndexer`` is the state of one replica, driven only from
the ticker thread (registration, probe sending, acknowledgements and ticks).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

PROBE = "ri_probe"
ACK = "ri_ack"


class Begin(enum.Enum):
    PENDING = "pending"  # registered: the callback runs once confirmed and applied (or failed)
    FALLBACK = "fallback"  # not leader, or no entry of this term committed yet: use the barrier


class Outcome(enum.Enum):
    SERVE = "serve"  # confirmed by a quorum round and applied up to the recorded commit index
    DEPOSED = "deposed"  # leadership (or the term) was lost before confirmation
    EXPIRED = "expired"  # not confirmed before the read's deadline


def quorum_seq(acked: Mapping[str, int], others: Iterable[str], voters: int) -> float:
    """The highest probe seq acknowledged by a majority of ``voters``, counting this server
    (which acknowledges every round it sends) as one; ``inf`` when it alone is a majority."""
    needed_from_others = voters // 2  # majority = voters // 2 + 1, minus this server
    if needed_from_others == 0:
        return math.inf
    seqs = sorted((acked.get(o, 0) for o in others), reverse=True)
    if len(seqs) < needed_from_others:
        return 0
    return seqs[needed_from_others - 1]


def answer_probe(probe: Mapping[str, Any], my_term: int) -> dict[str, Any]:
    """A peer's answer: ``ok`` iff its term is not above the prober's (it voted in no later
    term). It changes nothing locally: the answer is a statement about this instant only."""
    term = int(probe["term"])
    return {"type": ACK, "term": term, "seq": probe["seq"], "ok": my_term <= term, "peer": my_term}


class RaftView(Protocol):
    """What the tracker reads of its replica (ticker thread)."""

    def ri_is_leader(self) -> bool: ...
    def ri_term(self) -> int: ...
    def ri_commit_index(self) -> int: ...
    def ri_last_applied(self) -> int: ...
    def term_at(self, idx: int) -> int | None: ...
    def ri_others(self) -> list[str]: ...
    def ri_send(self, peer: str, message: dict[str, Any]) -> None: ...


@dataclass(slots=True)
class _Read:
    seq: int
    commit_index: int
    deadline: float
    done: Callable[[Outcome], None]


@dataclass(slots=True)
class ReadIndexer:
    """Read-index state of one replica for the term it currently leads."""

    view: RaftView
    resend_s: float  # an unanswered round is repeated after this long (lost on a reconnect)
    term: int = -1
    next_seq: int = 1  # the seq of the next round to send
    sent_at: float = -math.inf
    acked: dict[str, int] = field(default_factory=dict)
    pending: list[_Read] = field(default_factory=list)
    rounds_sent: int = 0
    served: int = 0

    def begin(self, done: Callable[[Outcome], None], *, now: float, deadline: float) -> Begin:
        """Register a read that arrived now. ``done`` runs later, in the ticker thread."""
        v = self.view
        if not v.ri_is_leader():
            return Begin.FALLBACK
        term, commit = v.ri_term(), v.ri_commit_index()
        if v.term_at(commit) != term:
            return Begin.FALLBACK  # thesis §6.4 step 1: no entry of this term committed yet
        if term != self.term:
            self._new_term(term)
        self.pending.append(_Read(self.next_seq, commit, deadline, done))
        return Begin.PENDING

    def on_ack(self, peer: str, message: Mapping[str, Any]) -> None:
        if int(message.get("term", -1)) != self.term:
            return  # an answer to a round of an earlier term of ours
        if message.get("ok"):
            self.acked[peer] = max(self.acked.get(peer, 0), int(message["seq"]))
        elif int(message.get("peer", -1)) > self.term:
            self._fail_all(Outcome.DEPOSED)  # a later term exists: we may no longer be leader

    def on_tick(self, now: float) -> None:
        if not self.pending:
            return
        v = self.view
        if not v.ri_is_leader() or v.ri_term() != self.term:
            self._fail_all(Outcome.DEPOSED)
            return
        others = v.ri_others()
        confirmed = quorum_seq(self.acked, others, len(others) + 1)
        applied = v.ri_last_applied()
        keep: list[_Read] = []
        for read in self.pending:
            if read.seq <= confirmed and applied >= read.commit_index:
                self.served += 1
                read.done(Outcome.SERVE)
            elif now > read.deadline:
                read.done(Outcome.EXPIRED)
            else:
                keep.append(read)
        self.pending = keep
        waiting = any(r.seq > confirmed for r in keep)
        if waiting and (
            any(r.seq == self.next_seq for r in keep) or now - self.sent_at > self.resend_s
        ):
            self._send_round(others, now)

    def _send_round(self, others: list[str], now: float) -> None:
        probe = {"type": PROBE, "term": self.term, "seq": self.next_seq}
        self.next_seq += 1
        self.sent_at = now
        self.rounds_sent += 1
        for peer in others:
            self.view.ri_send(peer, probe)

    def _new_term(self, term: int) -> None:
        self._fail_all(Outcome.DEPOSED)
        self.term = term
        self.acked = {}

    def _fail_all(self, outcome: Outcome) -> None:
        pending, self.pending = self.pending, []
        for read in pending:
            read.done(outcome)
