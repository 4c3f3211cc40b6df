"""The chaos workload: seeded clients doing every kind of operation over a few keys, each
recorded (invoke, outcome, complete) for the checker.

Why few keys, renewed every ``key_epoch_s``: a register history is checkable when many ops
overlap on the same key, but the search grows with the length of one key's history; a fresh
small key set every few seconds keeps both. Every written value is unique (``c<client>-<n>``),
so a read names the write it saw.

How outcomes are recorded (what the client promises, ``kvnode.client``): an answer is ``ok``;
``PreconditionFailed`` is an ``ok`` CAS that did not hold (with the version it saw);
``UnknownOutcome`` is ``unknown`` (may have applied); any other ``KvError`` is ``fail`` — the
client raises those only when no attempt can have applied — and any other exception (a bug, a
cancelled task) is ``unknown`` for writes, ``fail`` for reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass, field

from kvnode.client import Client
from kvnode.core import errors

from tests.support.linearizability import Op, Recorder

log = logging.getLogger(__name__)

KINDS = ("get", "eget", "put", "delete", "cas_version", "cas_value")
WEIGHTS = (30, 10, 20, 6, 17, 17)


@dataclass
class Workload:
    endpoints: list[str]
    seed: int
    clients: int = 5
    keys: int = 5
    key_epoch_s: float = 6.0
    timeout: float = 6.0
    # checker self-test: record eventual reads as strong ones, so the stale reads eventual
    # consistency allows must show up as linearizability violations
    eventual_as_strong: bool = False
    recorder: Recorder = field(default_factory=Recorder)
    used_keys: set[str] = field(default_factory=set)
    started: float = field(default_factory=time.monotonic)

    def key_set(self, now: float) -> list[str]:
        epoch = int((now - self.started) // self.key_epoch_s)
        return [f"ck{epoch}-{j}" for j in range(self.keys)]

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.gather(*(self._client(c, stop) for c in range(self.clients)))

    async def _client(self, c: int, stop: asyncio.Event) -> None:
        rng = random.Random(self.seed * 1000 + c)
        known: dict[str, tuple[str | None, int]] = {}  # key -> last (value, version) seen
        n = 0
        async with Client(self.endpoints, timeout=self.timeout) as client:
            while not stop.is_set():
                n += 1
                key = rng.choice(self.key_set(time.monotonic()))
                self.used_keys.add(key)
                kind = rng.choices(KINDS, WEIGHTS)[0]
                failed = await self._one(client, c, kind, key, f"c{c}-{n}", known, rng)
                if failed:  # back off a little, as a real client would
                    await asyncio.sleep(0.05 + rng.random() * 0.1)

    async def _one(
        self,
        client: Client,
        c: int,
        kind: str,
        key: str,
        value: str,
        known: dict[str, tuple[str | None, int]],
        rng: random.Random,
    ) -> bool:
        """Do and record one operation; True when it did not get an answer."""
        rec = self.recorder
        last_value, last_version = known.get(key, (None, 0))
        if kind in ("get", "eget"):
            strong = kind == "get" or self.eventual_as_strong
            op = rec.begin(key=key, kind="read", client=c, strong=strong)
            try:
                got = await client.get(key, consistency="strong" if kind == "get" else "eventual")
            except Exception as exc:  # a read has no effect: any error is "fail"
                rec.end(op, "fail")
                return _note(exc)
            rec.end(
                op,
                value=None if got is None else got.value,
                version=None if got is None else got.version,
            )
            if kind == "get":
                known[key] = (None, 0) if got is None else (got.value, got.version)
            return False
        if kind == "delete":
            op = rec.begin(key=key, kind="delete", client=c)
            return await self._write(op, known, client.delete_result(key))
        if kind == "put":
            op = rec.begin(key=key, kind="write", client=c, value=value)
            return await self._write(op, known, client.put(key, value))
        if kind == "cas_version":
            expect = last_version if rng.random() < 0.8 else last_version + rng.choice([-1, 1])
            op = rec.begin(key=key, kind="cas", client=c, value=value, if_version=max(0, expect))
            return await self._write(op, known, client.cas(key, value, if_version=op.if_version))
        want = last_value if last_value is not None and rng.random() < 0.85 else f"c{c}-never"
        op = rec.begin(key=key, kind="cas", client=c, value=value, if_value=want)
        return await self._write(op, known, client.cas(key, value, if_value=want))

    async def _write(self, op: Op, known: dict[str, tuple[str | None, int]], call) -> bool:  # type: ignore[no-untyped-def]
        rec = self.recorder
        try:
            result = await call
        except errors.PreconditionFailed as exc:
            seen = exc.details.get("current_version")
            rec.end(op, succeeded=False, seen_version=seen if isinstance(seen, int) else None)
            return False
        except errors.UnknownOutcome as exc:
            rec.end(op, "unknown")
            return _note(exc)
        except errors.KvError as exc:
            rec.end(op, "fail")
            return _note(exc)
        except Exception as exc:  # recorded as "may have applied"
            rec.end(op, "unknown")
            return _note(exc)
        if op.kind == "delete":
            rec.end(op, existed=result.deleted)
            known[op.key] = (None, 0)
        else:
            rec.end(op, version=int(result), succeeded=True if op.kind == "cas" else None)
            known[op.key] = (op.value, int(result))
        return False


def _note(exc: BaseException) -> bool:
    if isinstance(exc, asyncio.CancelledError):
        raise exc
    log.debug("operation failed: %r", exc)
    return True


async def final_reads(
    endpoints: list[str], keys: list[str], recorder: Recorder, *, timeout: float
) -> dict[str, tuple[str, int] | None]:
    """Strong reads of every key once the faults are healed, each retried until it answers
    (bounded by ``timeout`` in all); recorded in the history too, so they are checked."""
    final: dict[str, tuple[str, int] | None] = {}
    deadline = time.monotonic() + timeout
    async with Client(endpoints, timeout=5.0) as client:
        for key in sorted(keys):
            while True:
                op = recorder.begin(key=key, kind="read", client=-1)
                try:
                    got = await client.get(key)
                except errors.KvError:
                    recorder.end(op, "fail")
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.2)
                    continue
                recorder.end(
                    op,
                    value=None if got is None else got.value,
                    version=None if got is None else got.version,
                )
                final[key] = None if got is None else (got.value, got.version)
                break
    return final


async def cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
