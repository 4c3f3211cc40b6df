"""What ``decide`` returns: the actions to take (frozen values that ``reconcile.act`` carries
out) and the ``Decision`` with the status to report."""

from __future__ import annotations

from dataclasses import dataclass, field

from kvnode.core.model import PartitionMap

from kvoperator.decide.health import QuorumHealth
from kvoperator.model.names import ClusterNames
from kvoperator.model.spec import ReclaimPolicy
from kvoperator.model.status import ClusterStatus, Condition, Phase, RebalanceProgress


@dataclass(frozen=True, slots=True)
class ApplyObjects:
    """Create or update the StatefulSet (at ``replicas``), Services and PDB."""

    replicas: int


@dataclass(frozen=True, slots=True)
class InstallMap:
    """``PUT /v1/admin/map`` on the nodes of ``ordinals`` (bootstrap, or nodes that lag)."""

    pmap: PartitionMap
    ordinals: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class StartRebalance:
    current: PartitionMap
    target: PartitionMap


@dataclass(frozen=True, slots=True)
class ResumeRebalance:
    """Load the persisted rebalance and run it (or finish its abort); ``max_concurrent``: the
    cap of a replica replacement (``spec.replacement.maxConcurrent``), None for a rebalance."""

    max_concurrent: int | None = None


@dataclass(frozen=True, slots=True)
class ReclaimVolumes:
    """Apply the reclaim policy to the volumes of removed ordinals (their pods are gone)."""

    pvcs: tuple[str, ...]
    policy: ReclaimPolicy
    epoch: int


@dataclass(frozen=True, slots=True)
class RollPod:
    """Rolling upgrade step. ``delete=False``: mark the pod's volume (``ROLL_DRAIN_ANNOTATION``)
    and drain its node (``PUT /v1/admin/drain``: every leadership handed away and kept away).
    ``delete=True`` (a later pass saw it drained and leading nothing): delete the pod so the
    StatefulSet (``OnDelete``) recreates it from the new template. The pass in between lets
    clients learn the new leaders from the drained node's answers before it goes, and catches
    a leadership handed back to it by a peer whose view of the drain was stale."""

    ordinal: int
    revision: str
    delete: bool = False


@dataclass(frozen=True, slots=True)
class RestoreBackup:
    """Bootstrap from a backup: run the restore Job (``ringkv restore``) that seeds every
    replica ``pmap`` places from the KVClusterBackup ``backup`` and then installs ``pmap``
    (instead of ``InstallMap`` of an empty cluster)."""

    pmap: PartitionMap
    backup: str


@dataclass(frozen=True, slots=True)
class UndrainNode:
    """The rolled pod of ``ordinal`` is ready: once every replica it hosts in ``pmap`` has
    applied its leader's commit index, undrain it and remove the volume's mark."""

    ordinal: int
    pmap: PartitionMap


@dataclass(frozen=True, slots=True)
class ReplaceReplicas:
    """Replace replicas through the rebalance executor (``plan_replacement``): each
    ``(partition, old, new)`` is remove ``old``, seed ``new`` out of band, add it, let it catch
    up, verify its digest; ``new == old`` reseeds a node whose volume lost the partition.
    ``max_concurrent`` replicas are replaced at once."""

    current: PartitionMap
    replacements: tuple[tuple[int, str, str], ...]
    max_concurrent: int
    away: tuple[str, ...] = ()  # nodes left out of the resulting map (gone too long)


@dataclass(frozen=True, slots=True)
class DropStale:
    """A node back after its replicas were re-placed: install ``pmap`` (which does not list
    it) and drop its old copies of ``partitions``, so it rejoins only with fresh seeds."""

    ordinal: int
    partitions: tuple[int, ...]
    pmap: PartitionMap


Action = (
    ApplyObjects
    | InstallMap
    | StartRebalance
    | ResumeRebalance
    | ReclaimVolumes
    | RollPod
    | RestoreBackup
    | UndrainNode
    | ReplaceReplicas
    | DropStale
)


@dataclass(frozen=True, slots=True)
class Decision:
    actions: tuple[Action, ...]
    phase: Phase
    message: str
    ready: Condition
    progressing: Condition
    degraded: Condition | None = None
    replicas: int = 0
    ready_replicas: int = 0
    epoch: int | None = None
    progress: RebalanceProgress | None = None
    rebalancing: bool = field(default=False)
    bootstrapped: bool = False  # the epoch-1 map reached every node once (persisted in status)
    quorum: QuorumHealth = field(default_factory=lambda: QuorumHealth(lost=(), known=False))

    def status(self, names: ClusterNames, *, generation: int) -> ClusterStatus:
        rebalancing = Condition(
            "Rebalancing",
            self.rebalancing,
            "RebalanceInProgress" if self.rebalancing else "NoRebalance",
            self.message if self.rebalancing else "",
        )
        degraded = self.degraded or Condition("Degraded", False, "AsExpected")
        return ClusterStatus(
            replicas=self.replicas,
            ready_replicas=self.ready_replicas,
            selector=names.selector,
            observed_generation=generation,
            phase=self.phase,
            conditions=(
                self.ready,
                self.progressing,
                rebalancing,
                degraded,
                self.quorum.condition(),
            ),
            epoch=self.epoch,
            rebalance=self.progress,
            message=self.message,
            bootstrapped=self.bootstrapped,
        )
