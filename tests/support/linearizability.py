"""A small linearizability checker for per-key registers (Wing & Gong search, Porcupine-style).

A history is a list of ``Op``: read, write or compare-and-set of one key, each with its invoke and
complete times (``time.monotonic`` of the client) and an outcome: ``ok`` (the answer is known),
``fail`` (certainly not applied: dropped before the search) or ``unknown`` (may or may not have
taken effect, at any point after its invocation: it never constrains real-time order and may be
left out). Keys are independent registers, so each key is checked on its own.

The search linearizes, one at a time, an operation that no other pending operation precedes in
real time (it was invoked before every pending operation returned), applies it to the model and
backtracks on a contradiction; (set of linearized ops, model state) pairs already explored are
memoised. It is bounded: more than ``budget`` explored states raises ``SearchBudgetExceeded``
instead of running for ever.

The model: a register holds ``(value, version)``; ``None`` value means absent. Versions are
assigned by the store (ringkv: the Raft log index), so a write or CAS whose answer is unknown
leaves the version unknown (``None``) until a read reveals it; a precondition on an unknown
version may go either way. That only ever accepts more, never rejects a correct history.
"""

from __future__ import annotations

import itertools
import math
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace

State = tuple[str | None, int | None]  # (value, version)
INITIAL: State = (None, None)
_ids = itertools.count()


class SearchBudgetExceeded(RuntimeError):
    """The search explored more states than allowed: no verdict (make the history smaller)."""


@dataclass(frozen=True, slots=True)
class Op:
    key: str
    kind: str  # "read" | "write" | "cas"
    invoke: float
    complete: float = math.inf  # inf while unknown
    outcome: str = "ok"  # "ok" | "fail" | "unknown"
    value: str | None = None  # write/cas: the new value; read: the value seen (None: absent)
    version: int | None = None  # write/cas: the version assigned; read: the version seen
    if_version: int | None = None  # cas precondition
    if_value: str | None = None  # cas precondition
    succeeded: bool | None = None  # cas: whether the precondition held
    client: int = 0
    id: int = field(default_factory=lambda: next(_ids))

    def __str__(self) -> str:
        cond = f" if_version={self.if_version}" if self.if_version is not None else ""
        cond += f" if_value={self.if_value!r}" if self.if_value is not None else ""
        got = f" -> {self.succeeded}" if self.kind == "cas" else ""
        return (
            f"[c{self.client} {self.invoke:.4f}..{self.complete:.4f} {self.outcome}] "
            f"{self.kind} {self.key}={self.value!r} v{self.version}{cond}{got}"
        )


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    key: str | None = None  # the first key found not linearizable
    detail: str = ""
    explored: int = 0


# -- the model ---------------------------------------------------------------------------------
def _precondition(op: Op, state: State) -> bool | None:
    """Whether the CAS precondition holds in ``state`` (None: cannot tell, version unknown)."""
    value, version = state
    if op.if_value is not None and value != op.if_value:
        return False
    if op.if_version == 0:
        return value is None  # ringkv: version 0 means "only if absent"
    if op.if_version is not None:
        if value is None:
            return False
        if version is None:
            return None
        return version == op.if_version
    return value is not None if op.if_value is None else True


def step(op: Op, state: State) -> list[State]:
    """States after linearizing ``op`` in ``state`` (empty: impossible here)."""
    if op.outcome == "unknown":
        if op.kind == "read":
            return [state]
        if op.kind == "cas" and _precondition(op, state) is False:
            return [state]
        return [state, (op.value, None)]
    if op.kind == "read":
        if op.value is None:
            return [state] if state[0] is None else []
        if state[0] != op.value or (state[1] is not None and state[1] != op.version):
            return []
        return [(state[0], op.version)]
    if op.kind == "write":
        return [(op.value, op.version)]
    if op.kind == "cas":
        holds = _precondition(op, state)
        if op.succeeded:
            return [] if holds is False else [(op.value, op.version)]
        return [] if holds is True else [state]
    raise ValueError(f"unknown operation kind {op.kind!r}")


# -- the search --------------------------------------------------------------------------------
def check_key(ops: list[Op], *, budget: int = 200_000) -> tuple[bool, int]:
    """Whether one key's operations are linearizable; also the states explored."""
    ops = sorted((o for o in ops if o.outcome != "fail"), key=lambda o: o.invoke)
    must = 0  # ops that must be linearized: every op with a known answer
    for i, o in enumerate(ops):
        if o.outcome == "ok":
            must |= 1 << i
    seen: set[tuple[int, State]] = set()
    stack: list[tuple[int, State]] = [(0, INITIAL)]
    explored = 0
    while stack:
        done, state = stack.pop()
        if done & must == must:
            return True, explored
        if (done, state) in seen:
            continue
        seen.add((done, state))
        explored += 1
        if explored > budget:
            raise SearchBudgetExceeded(
                f"key {ops[0].key!r}: more than {budget} states explored over {len(ops)} ops"
            )
        stack.extend(_successors(ops, done, state))
    return False, explored


def _successors(ops: list[Op], done: int, state: State) -> Iterator[tuple[int, State]]:
    pending = [i for i in range(len(ops)) if not done >> i & 1]
    horizon = min(ops[i].complete for i in pending)
    for i in pending:
        if ops[i].invoke > horizon:
            break  # sorted by invoke: every later op started after some pending op returned
        for nxt in step(ops[i], state):
            yield done | 1 << i, nxt


def check(history: Iterable[Op], *, budget: int = 200_000) -> Verdict:
    """Check every key; the verdict names the first key that is not linearizable."""
    by_key: dict[str, list[Op]] = defaultdict(list)
    for op in history:
        by_key[op.key].append(op)
    total = 0
    for key in sorted(by_key):
        good, explored = check_key(by_key[key], budget=budget)
        total += explored
        if not good:
            lines = "\n".join(str(o) for o in sorted(by_key[key], key=lambda o: o.invoke))
            return Verdict(False, key, f"no linearization of key {key!r}:\n{lines}", total)
    return Verdict(True, None, "", total)


# -- recording ---------------------------------------------------------------------------------
class Recorder:
    """Collects a history from concurrent clients: ``begin`` at invocation, then ``end``."""

    def __init__(self) -> None:
        self.ops: list[Op] = []

    def begin(self, **kw: object) -> Op:
        return Op(invoke=time.monotonic(), **kw)  # type: ignore[arg-type]

    def end(self, op: Op, outcome: str = "ok", **kw: object) -> None:
        complete = math.inf if outcome == "unknown" else time.monotonic()
        self.ops.append(replace(op, complete=complete, outcome=outcome, **kw))  # type: ignore[arg-type]
