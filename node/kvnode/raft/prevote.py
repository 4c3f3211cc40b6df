"""Pre-vote (Raft thesis §9.6) with leader stickiness (§4.2.3): the pure decisions.

PySyncObj 0.3.17 has neither. A follower whose election timer fires increments its term and asks
for votes at once; every voter adopts the higher term, so one node that merely *missed* a few
heartbeats (cut off from the leader, or its ticker stalled) deposes a healthy leader, and a node
cut off for a while comes back with an inflated term and forces a re-election.

With pre-vote, a node whose timer fires first asks "would you vote for me at term T+1?" without
changing any term. A peer says yes only if it is not the leader, has not heard from a leader for
at least the minimum election timeout, would not already be past T+1, and the asker's log is at
least as up to date as its own. Only with a majority of yeses does the node increment its term
and run the real election. So terms grow only when a majority has lost its leader, and a healed
node returns with the term it left with. The wiring into PySyncObj is in ``kvnode.raft.compat``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LogPosition:
    """Last log index and term, the 'up to date' comparison of Raft §5.4.1."""

    index: int
    term: int

    def at_least(self, other: LogPosition) -> bool:
        if self.term != other.term:
            return self.term > other.term
        return self.index >= other.index


def grant(
    *,
    prospective_term: int,
    candidate_log: LogPosition,
    my_term: int,
    my_log: LogPosition,
    i_am_leader: bool,
    since_leader_contact_s: float,
    min_election_timeout_s: float,
) -> bool:
    """Whether this server would vote for the asker at ``prospective_term`` (changes nothing)."""
    if i_am_leader:
        return False  # a leader that still holds its majority is alive (it steps down otherwise)
    if since_leader_contact_s < min_election_timeout_s:
        return False  # stickiness: a live leader spoke to us recently
    if prospective_term <= my_term:
        return False  # the real vote at that term would fail anyway
    return candidate_log.at_least(my_log)


def term_to_adopt(
    *, granted: bool, responder_term: int | None, my_term: int, i_am_leader: bool
) -> int | None:
    """After a pre-vote answer: the higher term to step down to as a follower, or None.

    A refusal from a server already past our term carries that term (etcd's rule: a pre-vote
    is refused with the responder's term, and a pre-candidate that sees a higher term in a
    refusal becomes a follower at it). Without it a group can stall for good: a candidate that
    campaigned at T+1 (a leadership transfer bypasses pre-vote) with a log shorter than a peer's
    whose vote request that peer never received refuses every pre-vote at T+1 ("not past my
    term"), while the peer, still at T, refuses its pre-votes (its log is behind) and never
    learns of T+1: neither can win. Adopting T+1 lets the peer ask next at T+2, which the
    candidate grants. Answers without a term (older releases) change nothing."""
    if granted or i_am_leader or responder_term is None or responder_term <= my_term:
        return None
    return responder_term


@dataclass(frozen=True, slots=True)
class Round:
    """One pre-vote round of a would-be candidate."""

    term: int  # the prospective term (current term + 1)
    voters: int  # voting members including this server
    grants: frozenset[str]

    @classmethod
    def start(cls, *, current_term: int, self_id: str, voters: int) -> Round:
        return cls(term=current_term + 1, voters=voters, grants=frozenset({self_id}))

    def with_grant(self, node_id: str) -> Round:
        return Round(term=self.term, voters=self.voters, grants=self.grants | {node_id})

    @property
    def won(self) -> bool:
        return len(self.grants) * 2 > self.voters
