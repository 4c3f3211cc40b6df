"""Point-in-time views of local replicas, built in the ticker thread and read from any thread."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kvnode.raft.replica import PartitionReplica

_ROLES = {0: "follower", 1: "candidate", 2: "leader"}


@dataclass(frozen=True, slots=True)
class ReplicaStatus:
    """A point-in-time view of one local replica, safe to read from any thread."""

    partition: int
    self_addr: str
    role: str
    leader_addr: str | None
    term: int
    commit_index: int
    last_applied: int
    leader_commit_index: int | None
    store_applied: int
    members: tuple[str, ...]
    connected: tuple[str, ...]
    has_quorum: bool
    log_len: int
    updated_monotonic: float
    quiesced: bool = False

    @property
    def lag(self) -> int:
        """Entries committed by the leader that this replica has not applied yet."""
        return max(0, (self.leader_commit_index or self.commit_index) - self.last_applied)

    def to_dict(self) -> dict[str, Any]:
        return {
            "partition": self.partition,
            "self": self.self_addr,
            "role": self.role,
            "leader": self.leader_addr,
            "term": self.term,
            "commit_index": self.commit_index,
            "last_applied": self.last_applied,
            "store_applied": self.store_applied,
            "lag": self.lag,
            "members": list(self.members),
            "connected": list(self.connected),
            "has_quorum": self.has_quorum,
            "log_len": self.log_len,
            "quiesced": self.quiesced,
        }


def status_of(replica: PartitionReplica, now: float) -> ReplicaStatus:
    st = replica.getStatus()
    leader = st.get("leader")
    others = sorted(str(n.id) for n in replica.otherNodes)
    connected = tuple(n for n in others if st.get(f"partner_node_status_server_{n}") == 2)
    return ReplicaStatus(
        partition=replica.partition,
        self_addr=str(replica.selfNode.id),
        role=_ROLES.get(int(st["state"]), "unknown"),
        leader_addr=None if leader is None else str(leader.id),
        term=int(st["raft_term"]),
        commit_index=int(st["commit_idx"]),
        last_applied=int(st["last_applied"]),
        leader_commit_index=st.get("leader_commit_idx"),
        store_applied=replica.store.applied_index(),
        members=tuple(sorted([str(replica.selfNode.id), *others])),
        connected=connected,
        has_quorum=bool(st["has_quorum"]),
        log_len=int(st["log_len"]),
        updated_monotonic=now,
        quiesced=bool(replica.quiesced),
    )
