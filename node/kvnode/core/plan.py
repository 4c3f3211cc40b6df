"""Migration plans: the ordered, resumable membership changes that turn one map into another.

For every partition whose replica set changes, each replaced member pair becomes

    SEED new, ADD new, CATCH_UP new, VERIFY new, [TRANSFER_LEADER old], REMOVE old, DROP old

so a Raft group grows R -> R+1 -> R and never has two membership changes in flight. What must
stay true (property-tested on every prefix of generated plans, see ``voters_after``):

* a majority of the voters is up to date after every step, for groups of at least two members
  (a one-member group cannot add a voter without a window where its only up-to-date voter is
  not a majority of two: inherent to Raft, no data is at risk because the old member keeps all);
* a node is removed only after a new member of the same group was verified (drain, verify, then
  delete); on a replication-factor decrease the surplus removals come after all additions;
* the final membership is exactly the target's; leadership ends on the target's first element.

``PlanProgress`` records how many steps of each partition are done; with the plan it is all an
executor needs to resume after a crash. ``next_steps`` caps the partitions in motion.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

PLAN_FORMAT = 1


class StepKind(StrEnum):
    """One executor action on one partition; the value is the persisted name."""

    SEED = "seed"  # copy the partition's data to the new node out of band (snapshot stream)
    ADD = "add"  # Raft addNodeToCluster(new): the group grows to R+1 voters
    CATCH_UP = "catch_up"  # wait until the new member applied the leader's commit index
    VERIFY = "verify"  # digests of the new member and the leader agree
    TRANSFER_LEADER = "transfer_leader"  # move leadership off ``node_id`` (skipped if not leader)
    REMOVE = "remove"  # Raft removeNodeFromCluster(old): back to R voters
    DROP = "drop"  # delete the removed member's local data
    PREFER_LEADER = "prefer_leader"  # hand leadership to ``node_id``, the target's first element


@dataclass(frozen=True, slots=True)
class Step:
    partition: int
    kind: StepKind
    node_id: str

    def to_dict(self) -> dict[str, Any]:
        return {"partition": self.partition, "kind": self.kind.value, "node_id": self.node_id}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Step:
        return cls(int(d["partition"]), StepKind(str(d["kind"])), str(d["node_id"]))


@dataclass(frozen=True, slots=True)
class PartitionMove:
    """The steps of one partition, in order; ``current``/``target`` are its replica sets."""

    partition: int
    steps: tuple[Step, ...]
    current: tuple[str, ...] = ()
    target: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if any(s.partition != self.partition for s in self.steps):
            raise ValueError(f"move of partition {self.partition} holds another partition's step")

    def to_dict(self) -> dict[str, Any]:
        return {
            "partition": self.partition,
            "current": list(self.current),
            "target": list(self.target),
            "steps": [{"kind": s.kind.value, "node_id": s.node_id} for s in self.steps],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PartitionMove:
        p = int(d["partition"])
        steps = tuple(Step(p, StepKind(str(s["kind"])), str(s["node_id"])) for s in d["steps"])
        return cls(
            p,
            steps,
            tuple(str(n) for n in d.get("current", ())),
            tuple(str(n) for n in d.get("target", ())),
        )


@dataclass(frozen=True, slots=True)
class MigrationPlan:
    """Moves sorted by partition; partitions that do not change are absent."""

    moves: tuple[PartitionMove, ...]
    _index: dict[int, PartitionMove] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        index = {m.partition: m for m in self.moves}
        if len(index) != len(self.moves):
            raise ValueError("a partition appears twice in the plan")
        object.__setattr__(self, "_index", index)

    def move(self, partition: int) -> PartitionMove | None:
        return self._index.get(partition)

    @property
    def total_steps(self) -> int:
        return sum(len(m.steps) for m in self.moves)

    def to_dict(self) -> dict[str, Any]:
        return {"format": PLAN_FORMAT, "moves": [m.to_dict() for m in self.moves]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MigrationPlan:
        if int(d.get("format", PLAN_FORMAT)) != PLAN_FORMAT:
            raise ValueError(f"unsupported plan format {d.get('format')!r}")
        return cls(tuple(PartitionMove.from_dict(m) for m in d["moves"]))


def plan_migration(
    current: Sequence[Sequence[str]], target: Sequence[Sequence[str]]
) -> MigrationPlan:
    """The plan from ``current`` to ``target`` (per-partition replica lists, leader first)."""
    if len(current) != len(target):
        raise ValueError(f"maps differ in size: {len(current)} vs {len(target)} partitions")
    moves = []
    for p, (cur, tgt) in enumerate(zip(current, target, strict=True)):
        for name, members in (("current", cur), ("target", tgt)):
            if not members or len(set(members)) != len(members):
                raise ValueError(f"{name} partition {p} must list distinct nodes: {members}")
        steps = _partition_steps(p, tuple(cur), tuple(tgt))
        if steps:
            moves.append(PartitionMove(p, steps, tuple(cur), tuple(tgt)))
    return MigrationPlan(tuple(moves))


def _partition_steps(p: int, cur: tuple[str, ...], tgt: tuple[str, ...]) -> tuple[Step, ...]:
    """Steps for one partition. Surplus additions (replication grows) come first, so there are
    more copies sooner; surplus removals (replication shrinks) come last, after every VERIFY."""
    adds = [n for n in tgt if n not in cur]
    removes = [n for n in cur if n not in tgt]
    paired = min(len(adds), len(removes))
    steps: list[Step] = []
    for n in adds[paired:]:
        steps += _add_steps(p, n)
    for new, old in zip(adds[:paired], removes[:paired], strict=True):
        steps += _add_steps(p, new)
        steps += _remove_steps(p, old, leader=cur[0])
    for old in removes[paired:]:
        steps += _remove_steps(p, old, leader=cur[0])
    if tgt[0] != cur[0]:
        steps.append(Step(p, StepKind.PREFER_LEADER, tgt[0]))
    return tuple(steps)


def plan_replacement(
    current: Sequence[Sequence[str]],
    replacements: Iterable[tuple[int, str, str]],
) -> MigrationPlan:
    """Replace a dead or emptied replica: ``(partition, old, new)`` becomes

        REMOVE old, SEED new, ADD new, CATCH_UP new, VERIFY new

    (``new == old`` is a reseed: a node whose volume lost the partition gets a fresh copy under
    its old address). The old member goes FIRST, unlike a rebalance: it serves nothing, so
    adding before removing would make a group of R+1 voters whose up-to-date majority needs
    every live member plus a copy still catching up; removed first, the R-1 live voters are
    the whole group until the copy is verified. Nothing is dropped: the old copy is gone or on
    a node that is away. The caller checks that the live members make a quorum."""
    by_partition: dict[int, list[Step]] = {}
    targets: dict[int, list[str]] = {}
    for p, old, new in sorted(replacements):
        members = list(targets.get(p, current[p]))
        if old not in members:
            raise ValueError(f"{old} is not a replica of partition {p}: {members}")
        if new != old and new in members:
            raise ValueError(f"{new} already holds a replica of partition {p}")
        members[members.index(old)] = new
        targets[p] = members
        kinds = (StepKind.SEED, StepKind.ADD, StepKind.CATCH_UP, StepKind.VERIFY)
        steps = [Step(p, StepKind.REMOVE, old), *(Step(p, k, new) for k in kinds)]
        by_partition.setdefault(p, []).extend(steps)
    return MigrationPlan(
        tuple(
            PartitionMove(p, tuple(steps), tuple(current[p]), tuple(targets[p]))
            for p, steps in sorted(by_partition.items())
        )
    )


def _add_steps(p: int, node: str) -> list[Step]:
    kinds = (StepKind.SEED, StepKind.ADD, StepKind.CATCH_UP, StepKind.VERIFY)
    return [Step(p, k, node) for k in kinds]


def _remove_steps(p: int, node: str, *, leader: str) -> list[Step]:
    """The executor must still check leadership at REMOVE time: ``leader`` is only a hint."""
    handoff = [Step(p, StepKind.TRANSFER_LEADER, node)] if node == leader else []
    return [*handoff, Step(p, StepKind.REMOVE, node), Step(p, StepKind.DROP, node)]


@dataclass(frozen=True, slots=True)
class PlanProgress:
    """Steps completed per partition: ``done`` holds sorted (partition, count) pairs, count > 0."""

    done: tuple[tuple[int, int], ...] = ()
    _index: dict[int, int] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", dict(self.done))

    def steps_done(self, partition: int) -> int:
        return self._index.get(partition, 0)

    def to_dict(self) -> dict[str, Any]:
        return {"done": {str(p): n for p, n in self.done}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PlanProgress:
        pairs = sorted((int(p), int(n)) for p, n in d.get("done", {}).items())
        if any(n < 0 for _, n in pairs):
            raise ValueError("step counts must not be negative")
        return cls(tuple((p, n) for p, n in pairs if n > 0))


def advance(
    progress: PlanProgress, step: Step, *, plan: MigrationPlan | None = None
) -> PlanProgress:
    """Record ``step`` as completed. With ``plan``, refuse a step that is not the partition's
    next one (a replayed or out-of-order completion must not skip work)."""
    done = progress.steps_done(step.partition)
    if plan is not None:
        move = plan.move(step.partition)
        if move is None or done >= len(move.steps) or move.steps[done] != step:
            raise ValueError(f"{step} is not the next step of partition {step.partition}")
    counts = dict(progress.done)
    counts[step.partition] = done + 1
    return PlanProgress(tuple(sorted(counts.items())))


def next_steps(
    plan: MigrationPlan, progress: PlanProgress, *, max_concurrent: int
) -> tuple[Step, ...]:
    """Steps that may run now, in partition order: one per partition, and new partitions start
    only while fewer than ``max_concurrent`` are in motion (started, not finished). Partitions
    already in motion always continue, even if the cap was lowered since they started."""
    if max_concurrent < 1:
        raise ValueError(f"max_concurrent must be >= 1, got {max_concurrent}")
    running = sum(1 for m in plan.moves if 0 < progress.steps_done(m.partition) < len(m.steps))
    room = max_concurrent - running
    out: list[Step] = []
    for m in plan.moves:
        k = progress.steps_done(m.partition)
        if k >= len(m.steps):
            continue
        if k == 0:
            if room <= 0:
                continue
            room -= 1
        out.append(m.steps[k])
    return tuple(out)


def is_done(plan: MigrationPlan, progress: PlanProgress) -> bool:
    return all(progress.steps_done(m.partition) >= len(m.steps) for m in plan.moves)


@dataclass(frozen=True, slots=True)
class ProgressSummary:
    partitions_done: int
    partitions_total: int
    steps_done: int
    steps_total: int

    def to_dict(self) -> dict[str, int]:
        return {
            "partitions_done": self.partitions_done,
            "partitions_total": self.partitions_total,
            "steps_done": self.steps_done,
            "steps_total": self.steps_total,
        }


def progress_summary(plan: MigrationPlan, progress: PlanProgress) -> ProgressSummary:
    """Partitions moved / total and steps done / total (what status and the CLI report)."""
    done = [min(progress.steps_done(m.partition), len(m.steps)) for m in plan.moves]
    return ProgressSummary(
        partitions_done=sum(1 for m, k in zip(plan.moves, done, strict=True) if k == len(m.steps)),
        partitions_total=len(plan.moves),
        steps_done=sum(done),
        steps_total=plan.total_steps,
    )


def majority(voters: int) -> int:
    return voters // 2 + 1


def voters_after(
    current_members: Iterable[str], steps_done: Iterable[Step]
) -> tuple[frozenset[str], frozenset[str]]:
    """Pure quorum model of one group: (voters, up-to-date voters) after ``steps_done``.

    Members start up to date; ADD makes a voter that is not up to date until its CATCH_UP;
    REMOVE drops a voter. Other steps do not change membership.
    """
    voters = set(current_members)
    fresh = set(voters)
    for s in steps_done:
        if s.kind is StepKind.ADD:
            if s.node_id in voters:
                raise ValueError(f"{s.node_id} is already a voter of partition {s.partition}")
            voters.add(s.node_id)
        elif s.kind is StepKind.CATCH_UP:
            if s.node_id not in voters:
                raise ValueError(f"{s.node_id} catches up without being a voter")
            fresh.add(s.node_id)
        elif s.kind is StepKind.REMOVE:
            voters.discard(s.node_id)
            fresh.discard(s.node_id)
    return frozenset(voters), frozenset(fresh)
