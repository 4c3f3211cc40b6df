"""A small linearizability checker for per-key registers (Wing & Gong search, Porcupine-style).

A history is a list of ``Op``: read, write, delete or compare-and-set of one key, each with its
invoke and complete times (``time.monotonic`` of the client) and an outcome: ``ok`` (the answer
is known), ``fail`` (certainly not applied: dropped before the search) or ``unknown`` (may or
may not have taken effect, at any point after its invocation: it never constrains real-time
order and may be left out). Keys are independent registers, so each key is checked on its own.

The search linearizes, one at a time, an operation that no other pending operation precedes in
real time (it was invoked before every pending operation returned), applies it to the model and
backtracks on a contradiction; (set of linearized ops, model state) pairs already explored are
memoised. It is bounded: more than ``budget`` explored states raises ``SearchBudgetExceeded``
instead of running for ever.

The model: a register holds ``(value, version)``; ``None`` value means absent. Versions are
assigned by the store (ringkv: the Raft log index), so a write or CAS whose answer is unknown
leaves the version unknown (``None``) until a read reveals it; a precondition on an unknown
version may go either way. That only ever accepts more, never rejects a correct history.

A CAS that failed reports the version it saw (ringkv's ``PreconditionFailed.current_version``,
0 when absent) in ``seen_version``; a delete reports whether the key existed. Both are observations
the model must agree with. Reads with ``strong=False`` (eventual) are not linearizable by
design and are left out of the search; ``eventual_violations`` checks them for what they do
promise (only values some write could have produced), and ``lost_writes`` checks final strong
reads against every acknowledged write. ``dump``/``load`` keep a history as JSON.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Any

State = tuple[str | None, int | None]  # (value, version)
INITIAL: State = (None, None)
_ids = itertools.count()


class SearchBudgetExceeded(RuntimeError):
    """The search explored more states than allowed: no verdict (make the history smaller)."""


@dataclass(frozen=True, slots=True)
class Op:
    key: str
    kind: str  # "read" | "write" | "cas" | "delete"
    invoke: float
    complete: float = math.inf  # inf while unknown
    outcome: str = "ok"  # "ok" | "fail" | "unknown"
    value: str | None = None  # write/cas: the new value; read: the value seen (None: absent)
    version: int | None = None  # write/cas: the version assigned; read: the version seen
    if_version: int | None = None  # cas precondition
    if_value: str | None = None  # cas precondition
    succeeded: bool | None = None  # cas: whether the precondition held
    seen_version: int | None = None  # failed cas: the version it saw (0: absent; None: unsaid)
    existed: bool | None = None  # delete: whether the key existed (None: not reported)
    strong: bool = True  # read: False for an eventual read (not linearizable by design)
    client: int = 0
    id: int = field(default_factory=lambda: next(_ids))

    def __str__(self) -> str:
        cond = f" if_version={self.if_version}" if self.if_version is not None else ""
        cond += f" if_value={self.if_value!r}" if self.if_value is not None else ""
        got = f" -> {self.succeeded}" if self.kind == "cas" else ""
        got += f" saw v{self.seen_version}" if self.seen_version is not None else ""
        got += f" existed={self.existed}" if self.kind == "delete" else ""
        got += "" if self.strong else " eventual"
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


def _saw_version(seen: int | None, state: State) -> list[State]:
    """A failed CAS saw version ``seen`` (0: absent): the state must agree (and learns it)."""
    if seen is None:
        return [state]
    if seen == 0:
        return [state] if state[0] is None else []
    if state[0] is None or (state[1] is not None and state[1] != seen):
        return []
    return [(state[0], seen)]


def step(op: Op, state: State) -> list[State]:
    """States after linearizing ``op`` in ``state`` (empty: impossible here)."""
    if op.outcome == "unknown":
        if op.kind == "read":
            return [state]
        if op.kind == "delete":
            return [state, INITIAL]
        if op.kind == "cas" and _precondition(op, state) is False:
            return [state]
        return [state, (op.value, None)]
    if op.kind == "delete":
        if op.existed is not None and op.existed != (state[0] is not None):
            return []
        return [INITIAL]
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
        return [] if holds is True else _saw_version(op.seen_version, state)
    raise ValueError(f"unknown operation kind {op.kind!r}")


# -- the search --------------------------------------------------------------------------------
def check_key(ops: list[Op], *, budget: int = 200_000) -> tuple[bool, int]:
    """Whether one key's operations are linearizable; also the states explored.

    Every unknown operation doubles what the search may have to try, so it first tries
    without the unknown ones nobody observed (deletes, and writes whose value no read saw):
    "did not take effect" is always a legal choice for them, so a linearization found without
    them is one of the whole history. Only if that fails does it search with all of them."""
    seen_values = {o.value for o in ops if o.kind == "read" and o.outcome == "ok"}
    pruned = [
        o for o in ops if o.outcome != "unknown" or (o.kind != "delete" and o.value in seen_values)
    ]
    if len(pruned) < len(ops):
        good, explored = _search(pruned, budget=budget)
        if good:
            return True, explored
        more, total = _search(ops, budget=budget)
        return more, explored + total
    return _search(ops, budget=budget)


def _search(
    ops: list[Op], *, budget: int, deepest: list[tuple[int, int, State]] | None = None
) -> tuple[bool, int]:
    """The search proper; ``deepest`` (if given) receives the point where the most answered
    operations had been linearized: (how many, which, register state)."""
    ops = _searched(ops)
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
        if deepest is not None:
            depth = (done & must).bit_count()
            if not deepest or depth > deepest[0][0]:
                deepest[:] = [(depth, done, state)]
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


def _searched(ops: Iterable[Op]) -> list[Op]:
    return sorted((o for o in ops if o.outcome != "fail" and o.strong), key=lambda o: o.invoke)


def explain(ops: list[Op], *, budget: int = 200_000) -> str:
    """Where the search got stuck on a non-linearizable key: the register's state after the
    longest linearizable prefix found, the operations that could have come next (none fits)
    and the last ones linearized before them. Much shorter than the key's whole history."""
    deepest: list[tuple[int, int, State]] = []
    try:
        good, _ = _search(ops, budget=budget, deepest=deepest)
    except SearchBudgetExceeded:
        return "(search budget exceeded while explaining)"
    if good or not deepest:
        return "(linearizable)"
    depth, done, state = deepest[0]
    ordered = _searched(ops)
    pending = [o for i, o in enumerate(ordered) if not done >> i & 1]
    horizon = min(o.complete for o in pending)
    candidates = [o for o in pending if o.invoke <= horizon]
    before = sorted((o for i, o in enumerate(ordered) if done >> i & 1), key=lambda o: o.complete)
    answered = sum(1 for o in ordered if o.outcome == "ok")
    lines = [
        f"linearized {depth} of {answered} answered ops; the register was then {state};",
        "none of these could come next:",
        *(f"  {o}" for o in candidates[:12]),
        "after (last linearized):",
        *(f"  {o}" for o in before[-6:]),
    ]
    return "\n".join(lines)


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
            why = explain(by_key[key], budget=budget)
            detail = f"no linearization of key {key!r} ({len(by_key[key])} ops):\n{why}"
            return Verdict(False, key, detail, total)
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


# -- what eventual reads and the final state promise ---------------------------------------------
def _writes(history: Iterable[Op]) -> list[Op]:
    """Operations that may have changed a register: every write, delete and CAS that did not
    certainly fail (an unknown CAS may have applied; a CAS answered "failed" did not)."""
    return [
        o
        for o in history
        if o.kind in ("write", "delete", "cas")
        and o.outcome != "fail"
        and not (o.kind == "cas" and o.outcome == "ok" and not o.succeeded)
    ]


def eventual_violations(history: Iterable[Op]) -> list[str]:
    """Eventual reads that saw a value no write could have produced: one never written, or
    written only after the read returned, or with another version than its acknowledged
    write got. (An eventual read may be stale, so seeing "absent" is always allowed.)"""
    ops = list(history)
    by_value: dict[tuple[str, str], list[Op]] = defaultdict(list)
    for w in _writes(ops):
        if w.value is not None and w.kind != "delete":
            by_value[(w.key, w.value)].append(w)
    problems = []
    for r in ops:
        if r.kind != "read" or r.strong or r.outcome != "ok" or r.value is None:
            continue
        sources = [w for w in by_value.get((r.key, r.value), []) if w.invoke < r.complete]
        if not any(w.outcome == "unknown" or w.version == r.version for w in sources):
            problems.append(f"eventual read saw a value no write produced: {r}")
    return problems


def lost_writes(history: Iterable[Op], final: dict[str, tuple[str, int] | None]) -> list[str]:
    """Acknowledged writes the final state does not account for. ``final`` maps each key to
    its (value, version) from strong reads after the workload stopped (None: absent). An
    acknowledged write W is lost unless the final state is W itself or comes from an
    operation that could have been linearized after W (one that returned after W began)."""
    ops = list(history)
    writes = _writes(ops)
    lost = []
    for w in writes:
        if w.outcome != "ok" or w.kind == "delete" or w.key not in final:
            continue
        got = final[w.key]
        if got is not None and (got[0], got[1]) == (w.value, w.version):
            continue
        want = None if got is None else got[0]
        later = [
            x
            for x in writes
            if x.key == w.key
            and x.id != w.id
            and x.complete > w.invoke
            and (None if x.kind == "delete" else x.value) == want
        ]
        if not later:
            lost.append(f"acknowledged {w} but the final state is {got}")
    return lost


# -- keeping a history --------------------------------------------------------------------------
def dump(history: Iterable[Op]) -> list[dict[str, Any]]:
    """JSON-ready form of a history (``inf`` completion written as null)."""
    out = []
    for o in history:
        d = asdict(o)
        d["complete"] = None if math.isinf(o.complete) else o.complete
        out.append(d)
    return out


def load(rows: Iterable[dict[str, Any]]) -> list[Op]:
    return [
        Op(**{**r, "complete": math.inf if r.get("complete") is None else r["complete"]})
        for r in rows
    ]


def save(path: str, history: Iterable[Op], **extra: Any) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"ops": dump(history), **extra}, f, indent=0)
