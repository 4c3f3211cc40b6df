"""The closed-loop load generator of ``bench compare``: ``connections`` workers, each with one
request in flight, for a bounded time.

Every worker draws its ops from its own seeded ``OpStream`` (so each system sees the same
streams), times each op with ``perf_counter`` and, after a short warm-up (connections opened,
routing learned), records successful latencies and counts errors by kind. The generator's own
CPU use (process CPU seconds per wall second) is returned with the result, so a table shows
when the generator, not the system, was the limit; ``echo_ceiling`` measures what this
generator does against a trivial aiohttp server.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable

from bench import results, workloads
from bench.targets import OpError, Target

WARMUP_SHARE = 0.15
MIN_WARMUP_S = 0.2


async def run_cell(
    target: Target,
    cell: results.Cell,
    *,
    make_stream: Callable[[random.Random], workloads.OpStream],
    seconds: float,
    seed: int = 1,
) -> results.CellResult:
    """Run ``cell`` against ``target`` for ``seconds`` (plus warm-up) and summarize it."""
    warmup = max(MIN_WARMUP_S, WARMUP_SHARE * seconds)
    start = time.perf_counter()
    measure_from = start + warmup
    end = measure_from + seconds
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    per_second = [0] * (int(seconds) + 2)
    second_latencies: list[list[float]] = [[] for _ in per_second]
    cpu: list[float] = []

    async def worker(i: int) -> None:
        stream = make_stream(random.Random(seed * 100_003 + i))
        seq = i << 32
        while (t0 := time.perf_counter()) < end:
            op = stream.next()
            seq += 1
            try:
                if op.kind == "read":
                    await target.read(op.key)
                else:
                    await target.write(op.key, workloads.value_for(op.key, seq))
            except OpError as exc:
                if t0 >= measure_from:
                    errors[exc.kind] += 1
                continue
            t1 = time.perf_counter()
            if t0 >= measure_from:
                latencies.append(t1 - t0)
                second = min(len(per_second) - 1, int(t1 - measure_from))
                per_second[second] += 1
                second_latencies[second].append(t1 - t0)

    async def cpu_probe() -> None:
        await asyncio.sleep(max(0.0, measure_from - time.perf_counter()))
        cpu.append(time.process_time())

    probe = asyncio.create_task(cpu_probe())
    await asyncio.gather(*(worker(i) for i in range(cell.connections)))
    await probe
    wall = time.perf_counter() - measure_from
    return results.summarize(
        target.name,
        cell,
        latencies=latencies,
        errors=dict(errors),
        seconds=seconds,
        client_cpu=(time.process_time() - cpu[0]) / wall if wall > 0 else 0.0,
        per_second=per_second[: int(seconds)],
        per_second_p99=[results.percentile(x, 0.99) for x in second_latencies[: int(seconds)]],
    )
