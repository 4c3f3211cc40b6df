"""The stateless, deterministic command processor: the whole replicated state machine.

Every replica runs ``CommandProcessor.apply`` on the same entries in the same order, so it must
decide identically everywhere: it reads no clock (time comes from the command), no randomness,
no configuration, and only the store's own state. It is also the recovery path — a journal
replayed after a restart re-submits entries the store already has, which ``applied_index``
recognises — and what the tests drive directly.

Each call makes exactly ONE ``store.apply`` (or none, for a replayed entry), so data, expiry
index and applied index move together — also for a ``GroupCmd``: every request of the group is
decided on its own (``_decide``), then all their changes go into the one atomic write, and the
caller gets one ``ApplyResult`` per request, exactly what that request would get alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kvnode.core import errors, model, ops
from kvnode.raft.commands import BarrierCmd, Command, DigestCmd, ExpireCmd, GroupCmd, WriteCmd
from kvnode.storage import engine
from kvnode.watch.model import Effect, Kind


@dataclass(frozen=True, slots=True)
class ConditionFailure:
    """Why a WriteCmd changed nothing: op ``op_index`` on ``key`` saw ``current_version``
    (0 when absent or expired)."""

    op_index: int
    key: str
    current_version: int

    def to_error(self) -> errors.PreconditionFailed:
        return errors.PreconditionFailed(
            f"condition on key {self.key!r} failed (current version {self.current_version})",
            key=self.key,
            current_version=self.current_version,
            index=self.op_index,
        )


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """What applying one entry did.

    ``skipped``: the entry was at or below the applied index (journal replay); nothing happened
    and the other fields are empty. ``results``: one WriteResult per op of a successful WriteCmd,
    in op order. ``failure``: the first failed condition of a WriteCmd (then nothing but the
    applied index changed). ``expired``: records an ExpireCmd removed. ``effects``: what changed,
    per key, in op order (the watch history records them; ``kvnode.watch``).
    """

    index: int
    skipped: bool = False
    results: tuple[ops.WriteResult, ...] = ()
    failure: ConditionFailure | None = None
    expired: int = 0
    effects: tuple[Effect, ...] = field(default=(), compare=False)  # derived: not the outcome

    @property
    def ok(self) -> bool:
        return not self.skipped and self.failure is None


@dataclass(frozen=True, slots=True)
class GroupApplyResult:
    """What applying a ``GroupCmd`` did: ``requests[i]`` is the ``ApplyResult`` of request i
    (its own results or failure; every one at ``index``). ``skipped`` as for ``ApplyResult``."""

    index: int
    skipped: bool = False
    requests: tuple[ApplyResult, ...] = ()

    @property
    def effects(self) -> tuple[Effect, ...]:
        """What the entry changed: each request's effects, in request order (the watch history
        records them under the entry's index like a single write's)."""
        return tuple(e for r in self.requests for e in r.effects)


@dataclass(frozen=True, slots=True)
class _Decision:
    """One request decided against the store's current state, not written yet."""

    result: ApplyResult
    puts: dict[str, model.Record]
    deletes: tuple[str, ...]


class CommandProcessor:
    """Applies decoded commands to a ``PartitionStore``. Holds no state; one instance may serve
    every partition."""

    def apply(
        self, store: engine.PartitionStore, cmd: Command, index: int
    ) -> ApplyResult | GroupApplyResult:
        if index <= store.applied_index():
            if isinstance(cmd, GroupCmd):
                return GroupApplyResult(index=index, skipped=True)
            return ApplyResult(index=index, skipped=True)
        if isinstance(cmd, WriteCmd):
            return self._write(store, cmd, index)
        if isinstance(cmd, GroupCmd):
            return self._group(store, cmd, index)
        if isinstance(cmd, ExpireCmd):
            return self._expire(store, cmd, index)
        if isinstance(cmd, BarrierCmd | DigestCmd):
            store.apply(index, puts={}, deletes=())
            return ApplyResult(index=index)
        raise TypeError(f"not a command: {cmd!r}")

    def _write(self, store: engine.PartitionStore, cmd: WriteCmd, index: int) -> ApplyResult:
        decision = _decide(store, cmd, index)
        store.apply(index, puts=decision.puts, deletes=decision.deletes)
        return decision.result

    def _group(self, store: engine.PartitionStore, cmd: GroupCmd, index: int) -> GroupApplyResult:
        # Keys are disjoint across requests (GroupCmd checks it), so each decision reads only
        # state no other request of the entry changes, and the changes merge without conflict.
        decisions = [_decide(store, req, index) for req in cmd.reqs]
        puts: dict[str, model.Record] = {}
        deletes: list[str] = []
        for d in decisions:
            puts.update(d.puts)
            deletes.extend(d.deletes)
        store.apply(index, puts=puts, deletes=deletes)
        return GroupApplyResult(index=index, requests=tuple(d.result for d in decisions))

    def _expire(self, store: engine.PartitionStore, cmd: ExpireCmd, index: int) -> ApplyResult:
        doomed = []
        effects = []
        for key in store.expired_keys(cmd.now_ms, cmd.limit):
            rec = store.get(key)
            if rec is not None and rec.expired(cmd.now_ms):
                doomed.append(key)
                effects.append(Effect(Kind.EXPIRE, key, prev_version=rec.version))
        store.apply(index, puts={}, deletes=doomed)
        return ApplyResult(index=index, expired=len(doomed), effects=tuple(effects))


def _delete_effect(
    key: str, live: model.Record | None, stored: model.Record | None
) -> tuple[Effect, ...]:
    """A delete of a live record is a ``delete``; of an expired one still stored, the ``expire``
    watchers have not seen yet (the expiry sweep will not find it any more); of nothing, none."""
    if live is not None:
        return (Effect(Kind.DELETE, key, prev_version=live.version),)
    if stored is not None:
        return (Effect(Kind.EXPIRE, key, prev_version=stored.version),)
    return ()


def _decide(store: engine.PartitionStore, cmd: WriteCmd, index: int) -> _Decision:
    """What ``cmd`` does at ``index``: all its ops, or (a condition failed) nothing."""
    # Conditions see the state before the request; keys are distinct (WriteCmd checks it).
    live: dict[str, model.Record | None] = {}
    stored: dict[str, model.Record | None] = {}
    for i, op in enumerate(cmd.ops):
        rec = stored[op.key] = store.get(op.key)
        cur = None if rec is None or rec.expired(cmd.now_ms) else rec
        live[op.key] = cur
        if not _holds(op.cond, cur):
            failure = ConditionFailure(i, op.key, 0 if cur is None else cur.version)
            return _Decision(ApplyResult(index=index, failure=failure), {}, ())
    puts: dict[str, model.Record] = {}
    deletes: list[str] = []
    results: list[ops.WriteResult] = []
    effects: list[Effect] = []
    for op in cmd.ops:
        cur = live[op.key]
        if isinstance(op, ops.Put):
            exp = None if op.ttl_ms is None else cmd.now_ms + op.ttl_ms
            puts[op.key] = model.Record(value=op.value, version=index, expires_at_ms=exp)
            results.append(ops.WriteResult(key=op.key, version=index, existed=cur is not None))
            prev = 0 if cur is None else cur.version
            effects.append(Effect(Kind.PUT, op.key, op.value, prev, exp))
        else:
            deletes.append(op.key)  # also drops an expired record still stored
            version = 0 if cur is None else cur.version
            results.append(ops.WriteResult(key=op.key, version=version, existed=cur is not None))
            effects.extend(_delete_effect(op.key, cur, stored[op.key]))
    result = ApplyResult(index=index, results=tuple(results), effects=tuple(effects))
    return _Decision(result, puts, tuple(deletes))


def _holds(cond: ops.Condition, cur: model.Record | None) -> bool:
    """``if_version=N``: current version (0 if absent) is N; ``if_value=V``: live value is V."""
    if cond.if_version is not None and cond.if_version != (0 if cur is None else cur.version):
        return False
    return cond.if_value is None or (cur is not None and cur.value == cond.if_value)
