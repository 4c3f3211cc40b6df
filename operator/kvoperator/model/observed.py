"""What one reconcile pass saw: the StatefulSet, pods, PVCs, the nodes' maps and the persisted
rebalance. Built by ``kvoperator.reconcile.observe`` from the cluster alone (plus whether this
process is running the rebalance now), so a restarted operator sees what its predecessor saw."""

from __future__ import annotations

from dataclasses import dataclass

from kvnode.core.model import PartitionMap

UNFINISHED = ("running", "aborting", "failed")


@dataclass(frozen=True, slots=True)
class PodView:
    ordinal: int
    name: str
    running: bool  # phase Running with an IP and not being deleted: its node API can answer
    ready: bool  # the Ready condition (the node's /readyz)
    zone: str | None = None  # the zone label of the Kubernetes node it runs on
    revision: str | None = None  # its controller-revision-hash (the template it was made from)
    created: float | None = None  # creationTimestamp, seconds since the epoch
    # Since when it is not ready: the Ready condition's last transition to False, else its
    # creation (a pod never ready, e.g. Pending); None while ready or unknown.
    unready_since: float | None = None


@dataclass(frozen=True, slots=True)
class PvcView:
    ordinal: int
    name: str
    retired: bool  # retained at an earlier scale-down: stale data
    roll_drained: bool = False  # its node was drained by a rolling upgrade, not undrained yet


@dataclass(frozen=True, slots=True)
class NodeReport:
    """One running pod's answer to ``GET /v1/cluster``."""

    ordinal: int
    reachable: bool
    epoch: int | None = None  # None: reachable but no map yet
    # The leader this node knows for each partition (index = partition), None: not told.
    leaders: tuple[str | None, ...] | None = None
    # Partitions this node's volume lost (identity): it serves nothing of them until reseeded.
    needs_reseed: tuple[int, ...] = ()
    drained: bool | None = None  # maintenance drain (None: not told)
    # Partitions it hosts, asked only of running nodes the newest map does not list (a node
    # coming back after its replicas were re-placed): None when not asked or not told.
    hosted: tuple[int, ...] | None = None


@dataclass(frozen=True, slots=True)
class MapReport:
    """A node's answer about its map: ``reachable=False`` when it did not answer at all."""

    reachable: bool
    pmap: PartitionMap | None = None
    leaders: tuple[str | None, ...] | None = None  # ``leaders`` of the answer, by partition
    drained: bool | None = None  # the node's own maintenance drain flag


@dataclass(frozen=True, slots=True)
class RebalanceView:
    """The persisted executor state (ConfigMap) and, if this process runs it, live progress."""

    status: str  # running | aborting | failed | done | aborted
    base: PartitionMap
    target: PartitionMap
    active: bool  # this operator process is running (or aborting) it right now
    partitions_done: int = 0
    partitions_total: int = 0
    steps_done: int = 0
    steps_total: int = 0
    bytes_moved: int = 0
    eta_s: float | None = None
    failure: str | None = None
    updated_at: float = 0.0  # wall clock of the last save
    replacement: bool = False  # a replica replacement (reseed or re-placement), not a resize

    @property
    def finished(self) -> bool:
        return self.status not in UNFINISHED

    @property
    def target_size(self) -> int:
        return len(self.target.nodes)


@dataclass(frozen=True, slots=True)
class Observed:
    generation: int
    now: float  # wall clock, passed in so decide stays pure
    statefulset_replicas: int | None  # None: the StatefulSet does not exist
    pods: tuple[PodView, ...] = ()
    pvcs: tuple[PvcView, ...] = ()
    nodes: tuple[NodeReport, ...] = ()
    cluster_map: PartitionMap | None = None  # the newest map any reachable node holds
    rebalance: RebalanceView | None = None
    bootstrapped: bool = False  # status.bootstrapped: the first map reached every node once
    update_revision: str | None = None  # the StatefulSet's status.updateRevision (OnDelete)
    previous_phase: str | None = None  # status.phase as the last pass wrote it

    def pod(self, ordinal: int) -> PodView | None:
        return next((p for p in self.pods if p.ordinal == ordinal), None)

    def running(self, ordinals: range | list[int]) -> bool:
        return all((p := self.pod(o)) is not None and p.running for o in ordinals)

    def ready(self, ordinals: range | list[int]) -> bool:
        return all((p := self.pod(o)) is not None and p.ready for o in ordinals)

    def pvc(self, ordinal: int) -> PvcView | None:
        return next((p for p in self.pvcs if p.ordinal == ordinal), None)

    def zones(self) -> dict[int, str | None]:
        return {p.ordinal: p.zone for p in self.pods}
