"""The rebalance executor's persisted state: everything a restarted executor resumes from.

Where it is kept is injectable (``StateStore``): ``FileStore`` (``ringkv local``) or, in the
operator, a ConfigMap owned by the KVCluster. The file store keeps one JSON file, replaced
atomically (temporary file, fsync, rename, fsync of the directory), so a crash leaves either the
previous state or the new one, never a torn file. The executor persists
progress BEFORE it acts on it (installing the next map), so the file never claims less than the
nodes were told; replaying from it re-runs at most the steps in flight, which are idempotent.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from kvnode.core import files
from kvnode.core.model import PartitionMap
from kvnode.core.plan import MigrationPlan, PartitionMove, PlanProgress, StepKind

STATE_FORMAT = 1


class Status(StrEnum):
    """Where a rebalance stands; the value is the persisted name."""

    RUNNING = "running"
    ABORTING = "aborting"  # rolling partitions in motion back (or forward); resumable
    DONE = "done"  # the target map is installed everywhere
    ABORTED = "aborted"  # every partition is either at base or at target; the map says which
    FAILED = "failed"  # an abort could not finish; ``load`` + ``abort`` retries it

    @property
    def finished(self) -> bool:
        """A finished state may be overwritten by a new rebalance."""
        return self in (Status.DONE, Status.ABORTED)


@dataclass(frozen=True, slots=True)
class RebalanceState:
    """One rebalance.

    ``started`` are the partitions whose first step was launched: with ``progress`` they tell an
    abort after a crash which partitions may have changed although no step of theirs completed.
    ``orphans`` are (partition, node) replicas an abort could not drop.
    """

    status: Status
    base: PartitionMap
    target: PartitionMap
    plan: MigrationPlan
    progress: PlanProgress = field(default_factory=PlanProgress)
    started: frozenset[int] = frozenset()
    rolled_back: frozenset[int] = frozenset()
    orphans: tuple[tuple[int, str], ...] = ()
    bytes_moved: int = 0
    started_at: float = 0.0  # wall clock (time.time()) of the first run
    step_seconds: float = 0.0  # summed durations of completed steps (the ETA's input)
    partition_seconds: float = 0.0  # summed durations of completed partitions
    failure: str | None = None  # why the run stopped (step error, timeout)
    abort_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "status": self.status.value,
            "base": self.base.to_dict(),
            "target": self.target.to_dict(),
            "plan": self.plan.to_dict(),
            "progress": self.progress.to_dict(),
            "started": sorted(self.started),
            "rolled_back": sorted(self.rolled_back),
            "orphans": [[p, n] for p, n in self.orphans],
            "bytes_moved": self.bytes_moved,
            "started_at": self.started_at,
            "step_seconds": self.step_seconds,
            "partition_seconds": self.partition_seconds,
            "failure": self.failure,
            "abort_reason": self.abort_reason,
        }

    def in_motion(self) -> list[PartitionMove]:
        """Moves started and not finished (started with no step done: the first step may have
        happened before a crash)."""
        return [
            m
            for m in self.plan.moves
            if m.partition in self.started and self.progress.steps_done(m.partition) < len(m.steps)
        ]

    def rolls_forward(self, move: PartitionMove) -> bool:
        """An abort finishes this move once a member left, or may have: a REMOVE is done or may be
        in flight (its replacement is verified, so finishing is safe; undoing it would need the
        old member back). Other moves are rolled back."""
        reach = move.steps[: self.progress.steps_done(move.partition) + 1]
        return any(s.kind is StepKind.REMOVE for s in reach)

    def joiners(self, partition: int) -> list[str]:
        """Nodes a rolled-back partition may have gained, newest first: those seeded by its done
        steps or by the step that may have been in flight."""
        move = self.plan.move(partition)
        if move is None:
            return []
        reach = move.steps[: self.progress.steps_done(partition) + 1]
        seeded = [s.node_id for s in reach if s.kind is StepKind.SEED]
        return [n for n in reversed(seeded) if n not in self.base.replicas[partition]]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RebalanceState:
        if d.get("format") != STATE_FORMAT:
            raise ValueError(f"unsupported rebalance state format {d.get('format')!r}")
        return cls(
            status=Status(d["status"]),
            base=PartitionMap.from_dict(d["base"]),
            target=PartitionMap.from_dict(d["target"]),
            plan=MigrationPlan.from_dict(d["plan"]),
            progress=PlanProgress.from_dict(d["progress"]),
            started=frozenset(int(p) for p in d.get("started", ())),
            rolled_back=frozenset(int(p) for p in d.get("rolled_back", ())),
            orphans=tuple((int(p), str(n)) for p, n in d.get("orphans", ())),
            bytes_moved=int(d.get("bytes_moved", 0)),
            started_at=float(d.get("started_at", 0.0)),
            step_seconds=float(d.get("step_seconds", 0.0)),
            partition_seconds=float(d.get("partition_seconds", 0.0)),
            failure=_opt_str(d.get("failure")),
            abort_reason=_opt_str(d.get("abort_reason")),
        )


def _opt_str(v: Any) -> str | None:
    return None if v is None else str(v)


class StateStore(Protocol):
    """Where the executor persists its state. ``save`` must be durable and atomic when it
    returns (the executor acts on the saved state right after); ``load`` returns None when no
    state was ever saved and raises ValueError when the stored state is unreadable."""

    def save(self, state: RebalanceState) -> None: ...

    def load(self) -> RebalanceState | None: ...


@dataclass(frozen=True, slots=True)
class FileStore:
    """The state in one local JSON file (see the module docstring)."""

    path: str

    def save(self, state: RebalanceState) -> None:
        save(self.path, state)

    def load(self) -> RebalanceState | None:
        return load(self.path)

    def __str__(self) -> str:
        return self.path


def encode(state: RebalanceState) -> str:
    """The state as compact JSON (the C encoder: no indent)."""
    return json.dumps(state.to_dict(), sort_keys=True)


def decode(raw: str, *, source: str) -> RebalanceState:
    """Parse and check a stored state; ValueError names ``source`` if it is corrupt, of an
    unknown format, or inconsistent (a plan that does not match its maps)."""
    try:
        d = json.loads(raw)
        if not isinstance(d, dict):
            raise ValueError("not a JSON object")
        state = RebalanceState.from_dict(d)
        _check(state)
    except (ValueError, KeyError, TypeError) as e:
        what = f"missing field {e}" if isinstance(e, KeyError) else str(e)
        raise ValueError(f"rebalance state {source} is unreadable: {what}") from e
    return state


def save(path: str, state: RebalanceState) -> None:
    """Write ``state`` to ``path`` atomically and durably."""
    files.write_atomic(path, encode(state).encode("utf-8"))


def load(path: str) -> RebalanceState | None:
    """The state at ``path``; None if there is no file. ValueError as ``decode``."""
    try:
        with open(path, encoding="utf-8") as f:
            raw = f.read()
    except FileNotFoundError:
        return None
    return decode(raw, source=path)


def _check(state: RebalanceState) -> None:
    if state.base.partitions != state.target.partitions:
        raise ValueError("base and target maps differ in partition count")
    for m in state.plan.moves:
        if not 0 <= m.partition < state.base.partitions:
            raise ValueError(f"plan moves partition {m.partition}, outside the maps")
        if state.progress.steps_done(m.partition) > len(m.steps):
            raise ValueError(f"progress of partition {m.partition} exceeds its steps")
    moved = {m.partition for m in state.plan.moves}
    stray = [p for p, _ in state.progress.done if p not in moved]
    if stray or not state.rolled_back <= moved or not state.started <= moved:
        raise ValueError(f"progress names partitions outside the plan: {stray}")
