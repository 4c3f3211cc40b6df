"""Frozen value types shared by the node, the client and the operator.

``PartitionMap`` is the cluster's routing truth: which nodes hold a replica of each partition, at
which epoch. The operator (or ``ringkv local``) decides it; nodes only obey it. Conversion to and
from JSON happens only here (``to_dict``/``from_dict``), at the edge.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """How to reach one storage node.

    ``host`` is the stable advertised name (a StatefulSet pod DNS name on Kubernetes, an address
    on the local cluster). PySyncObj identifies peers by the literal ``host:port`` string, so it
    must never change for the life of the node. The Raft port of partition ``p`` is
    ``raft_port_base + p``.
    """

    node_id: str
    host: str
    http_port: int
    raft_port_base: int
    zone: str | None = None

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    def raft_addr(self, partition: int) -> str:
        return f"{self.host}:{self.raft_port_base + partition}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "host": self.host,
            "http_port": self.http_port,
            "raft_port_base": self.raft_port_base,
            "zone": self.zone,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> NodeInfo:
        zone = d.get("zone")
        return cls(
            node_id=str(d["node_id"]),
            host=str(d["host"]),
            http_port=int(d["http_port"]),
            raft_port_base=int(d["raft_port_base"]),
            zone=None if zone is None else str(zone),
        )


@dataclass(frozen=True, slots=True)
class PartitionMap:
    """Epoch-stamped assignment of every partition to its replica nodes.

    ``replicas[p]`` lists node ids; the first is the preferred leader. Invariants (checked by
    ``validate``): one entry per partition, distinct nodes per partition, every node known.
    """

    epoch: int
    partitions: int
    replication: int
    nodes: tuple[NodeInfo, ...]
    replicas: tuple[tuple[str, ...], ...]
    _by_id: dict[str, NodeInfo] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_id", {n.node_id: n for n in self.nodes})

    def validate(self) -> None:
        """Raise ValueError if the map breaks an invariant."""
        if self.partitions <= 0 or self.replication <= 0:
            raise ValueError("partitions and replication must be positive")
        if len(self.replicas) != self.partitions:
            raise ValueError(
                f"map has {len(self.replicas)} entries for {self.partitions} partitions"
            )
        if len(self._by_id) != len(self.nodes):
            raise ValueError("duplicate node ids in map")
        for p, members in enumerate(self.replicas):
            if len(set(members)) != len(members):
                raise ValueError(f"partition {p} lists a node twice: {members}")
            unknown = [m for m in members if m not in self._by_id]
            if unknown:
                raise ValueError(f"partition {p} names unknown nodes {unknown}")
            if not members:
                raise ValueError(f"partition {p} has no replicas")

    def node(self, node_id: str) -> NodeInfo:
        return self._by_id[node_id]

    def has_node(self, node_id: str) -> bool:
        return node_id in self._by_id

    def replicas_of(self, partition: int) -> tuple[NodeInfo, ...]:
        return tuple(self._by_id[n] for n in self.replicas[partition])

    def partitions_of(self, node_id: str) -> tuple[int, ...]:
        return tuple(p for p, members in enumerate(self.replicas) if node_id in members)

    def node_for_raft_addr(self, partition: int, addr: str) -> NodeInfo | None:
        """The node whose Raft address for ``partition`` is ``addr`` (PySyncObj's peer id)."""
        for node in self.nodes:
            if node.raft_addr(partition) == addr:
                return node
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "partitions": self.partitions,
            "replication": self.replication,
            "nodes": [n.to_dict() for n in self.nodes],
            "replicas": [list(r) for r in self.replicas],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PartitionMap:
        pmap = cls(
            epoch=int(d["epoch"]),
            partitions=int(d["partitions"]),
            replication=int(d["replication"]),
            nodes=tuple(NodeInfo.from_dict(n) for n in d["nodes"]),
            replicas=tuple(tuple(str(m) for m in r) for r in d["replicas"]),
        )
        pmap.validate()
        return pmap

    @classmethod
    def build(
        cls,
        *,
        epoch: int,
        nodes: Sequence[NodeInfo],
        replicas: Sequence[Sequence[str]],
        replication: int,
    ) -> PartitionMap:
        pmap = cls(
            epoch=epoch,
            partitions=len(replicas),
            replication=replication,
            nodes=tuple(sorted(nodes, key=lambda n: n.node_id)),
            replicas=tuple(tuple(r) for r in replicas),
        )
        pmap.validate()
        return pmap


@dataclass(frozen=True, slots=True)
class Record:
    """A stored value with its version (the Raft log index that wrote it) and optional expiry.

    ``expires_at_ms`` is absolute wall-clock milliseconds since the epoch, fixed when the write was
    proposed, so every replica agrees on it.
    """

    value: str
    version: int
    expires_at_ms: int | None = None

    def expired(self, now_ms: int) -> bool:
        return self.expires_at_ms is not None and self.expires_at_ms <= now_ms
