"""A bounded, checking client workload: writers and readers against a live cluster.

Used by the benchmarks (bench/) and by the integration tests that scale a cluster under load.
Each writer owns its keys and writes them sequentially with increasing values, so the latest
acknowledged value of every key is known exactly. Readers do strong reads of written keys and
check each answer is at least as new as the last write acknowledged before the read began
(a stale strong read is a linearizability violation). Every operation is timed.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass, field

from kvnode.client import Client
from kvnode.core import errors


@dataclass(frozen=True, slots=True)
class Sample:
    at: float  # monotonic time the operation started
    op: str  # "put" | "get"
    seconds: float
    ok: bool


@dataclass(frozen=True, slots=True)
class WindowStats:
    ops: int
    ok: int
    p50_ms: float
    p99_ms: float
    ops_per_s: float

    @property
    def success_rate(self) -> float:
        return 1.0 if self.ops == 0 else self.ok / self.ops


@dataclass
class Workload:
    endpoints: list[str]
    writers: int = 4
    readers: int = 4
    keys_per_writer: int = 40
    client_timeout: float = 15.0
    acked: dict[str, tuple[str, int]] = field(default_factory=dict)  # key -> (value, version)
    uncertain: dict[str, list[str]] = field(default_factory=dict)  # values of UnknownOutcome puts
    samples: list[Sample] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def __aenter__(self) -> Workload:
        self._client = Client(self.endpoints, timeout=self.client_timeout)
        await self._client.__aenter__()
        for w in range(self.writers):
            self._tasks.append(asyncio.create_task(self._writer(w)))
        for r in range(self.readers):
            self._tasks.append(asyncio.create_task(self._reader(r)))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self._client.close()

    def _record(self, op: str, started: float, ok: bool) -> None:
        self.samples.append(Sample(started, op, time.monotonic() - started, ok))

    async def _writer(self, w: int) -> None:
        seq = 0
        while not self._stop.is_set():
            seq += 1
            key = f"wl-{w}-{seq % self.keys_per_writer}"
            value = f"{w}:{seq}"
            started = time.monotonic()
            try:
                version = await self._client.put(key, value)
            except errors.UnknownOutcome as exc:
                self.uncertain.setdefault(key, []).append(value)
                self.failures.append(f"put {key}={value}: {exc}")
                self._record("put", started, False)
                continue
            except errors.KvError as exc:
                self.failures.append(f"put {key}={value}: {exc.code}: {exc}")
                self._record("put", started, False)
                await asyncio.sleep(0.05)
                continue
            self.acked[key] = (value, version)
            self.uncertain.pop(key, None)
            self._record("put", started, True)

    async def _reader(self, r: int) -> None:
        rng = random.Random(r)
        while not self._stop.is_set():
            if not self.acked:
                await asyncio.sleep(0.01)
                continue
            key = rng.choice(list(self.acked))
            floor = self.acked[key][1]
            started = time.monotonic()
            try:
                got = await self._client.get(key)
            except errors.KvError as exc:
                self.failures.append(f"get {key}: {exc.code}: {exc}")
                self._record("get", started, False)
                await asyncio.sleep(0.05)
                continue
            self._record("get", started, True)
            if got is None or got.version < floor:
                seen = None if got is None else got.version
                self.failures.append(f"stale strong read of {key}: version {seen} < {floor}")

    def window(self, start: float, end: float, op: str | None = None) -> WindowStats:
        """Stats of the operations that started in ``[start, end)``."""
        chosen = [s for s in self.samples if start <= s.at < end and (op is None or s.op == op)]
        lat = sorted(s.seconds for s in chosen if s.ok)

        def pct(q: float) -> float:
            return 0.0 if not lat else lat[min(len(lat) - 1, int(q * len(lat)))] * 1000

        span = max(1e-9, end - start)
        return WindowStats(
            ops=len(chosen),
            ok=sum(1 for s in chosen if s.ok),
            p50_ms=pct(0.50),
            p99_ms=pct(0.99),
            ops_per_s=len(chosen) / span,
        )

    async def lost_writes(self, client: Client) -> list[str]:
        """Keys whose stored value is not the last acknowledged one (or a later write whose
        outcome was unknown): each is a lost acknowledged write."""
        problems = []
        for key, (value, version) in sorted(self.acked.items()):
            got = await client.get(key)
            allowed = {value, *self.uncertain.get(key, [])}
            if got is None or got.value not in allowed or got.version < version:
                seen = None if got is None else (got.value, got.version)
                problems.append(f"{key}: acked {(value, version)}, stored {seen}")
        return problems
