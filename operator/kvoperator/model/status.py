"""The KVCluster ``status`` the operator writes: typed here, converted to JSON at the edge.

Conditions follow the Kubernetes API conventions: ``type``, ``status`` ("True"/"False"),
``reason`` (a stable CamelCase word), ``message``, ``observedGeneration`` and
``lastTransitionTime``, which only moves when ``status`` flips (``merge_conditions``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

CONDITION_TYPES = ("Ready", "Progressing", "Rebalancing", "Degraded", "QuorumLost")


class Phase(StrEnum):
    BOOTSTRAPPING = "Bootstrapping"  # creating pods, installing the first map
    READY = "Ready"
    SCALING = "Scaling"  # waiting for pods to run before a rebalance, or shrinking after one
    REBALANCING = "Rebalancing"
    UPGRADING = "Upgrading"  # rolling pods onto a changed template, one at a time
    PAUSED = "Paused"
    DEGRADED = "Degraded"  # a problem the operator cannot fix by itself right now


@dataclass(frozen=True, slots=True)
class Condition:
    type: str
    status: bool
    reason: str
    message: str = ""

    def to_dict(self, *, generation: int, now: str) -> dict[str, Any]:
        return {
            "type": self.type,
            "status": "True" if self.status else "False",
            "reason": self.reason,
            "message": self.message,
            "observedGeneration": generation,
            "lastTransitionTime": now,
        }


@dataclass(frozen=True, slots=True)
class RebalanceProgress:
    from_replicas: int
    to_replicas: int
    partitions_done: int
    partitions_total: int
    steps_done: int
    steps_total: int
    bytes_moved: int
    eta_seconds: float | None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "fromReplicas": self.from_replicas,
            "toReplicas": self.to_replicas,
            "partitionsMoved": self.partitions_done,
            "partitionsTotal": self.partitions_total,
            "stepsDone": self.steps_done,
            "stepsTotal": self.steps_total,
            "bytesMoved": self.bytes_moved,
        }
        if self.eta_seconds is not None:
            d["etaSeconds"] = round(self.eta_seconds)
        return d

    @property
    def summary(self) -> str:
        """The printer column: partitions moved / total."""
        return f"{self.partitions_done}/{self.partitions_total}"


@dataclass(frozen=True, slots=True)
class ClusterStatus:
    replicas: int  # nodes in the map that takes effect (the operator owns this count)
    ready_replicas: int
    selector: str
    observed_generation: int
    phase: Phase
    conditions: tuple[Condition, ...]
    epoch: int | None
    rebalance: RebalanceProgress | None
    message: str = ""
    bootstrapped: bool = False

    def to_dict(self, *, previous: Mapping[str, Any] | None, now: str) -> dict[str, Any]:
        """JSON for ``status``; ``previous`` (the current status) keeps transition times."""
        old = (previous or {}).get("conditions") or []
        d: dict[str, Any] = {
            "replicas": self.replicas,
            "readyReplicas": self.ready_replicas,
            "selector": self.selector,
            "observedGeneration": self.observed_generation,
            "phase": self.phase.value,
            "message": self.message,
            "conditions": merge_conditions(
                old, self.conditions, generation=self.observed_generation, now=now
            ),
            "epoch": self.epoch,
            "rebalance": None if self.rebalance is None else self.rebalance.to_dict(),
            "progress": None if self.rebalance is None else self.rebalance.summary,
            "bootstrapped": self.bootstrapped,
        }
        return d


def merge_conditions(
    old: Sequence[Mapping[str, Any]],
    new: Sequence[Condition],
    *,
    generation: int,
    now: str,
) -> list[dict[str, Any]]:
    """``new`` as JSON, keeping each condition's ``lastTransitionTime`` unless it flipped."""
    before = {c.get("type"): c for c in old}
    out = []
    for c in new:
        d = c.to_dict(generation=generation, now=now)
        prev = before.get(c.type)
        if (
            prev is not None
            and prev.get("status") == d["status"]
            and prev.get("lastTransitionTime")
        ):
            d["lastTransitionTime"] = prev["lastTransitionTime"]
        out.append(d)
    return out
