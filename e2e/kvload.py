"""A ringkv client process for the operator e2e tests: fill, keep a load running, verify.

It runs as an in-cluster client would: it knows only the client Service URL
(`http://<cluster>.<ns>.svc.cluster.local:7000`) and uses `kvnode.client.Client`, which learns
the partition map from there and (with `--direct`) talks to partition leaders by their
headless-Service names. The test starts it wrapped in `LocalCluster.with_cluster_dns`, so those
names resolve as in a pod. Results go to `--out` as JSON; nothing is printed.

* `fill --keys N [--prefix P --value-size S]`: write keys `Pk00000..` (value `<key>@fill`, padded
  to S characters) in batches through the Service.
* `run --keys N --workers W --stop-file F`: until F exists, each worker overwrites random keys
  of its own share (key index % W == worker) and strong-reads another of its keys, checking it
  sees its last acknowledged write (a read-your-writes / linearizability check per key).
  Records every acknowledged value, every error and every latency (wall clock start, seconds).
* `verify --expected FILE`: strong-read every key of FILE (`{key: [allowed values]}`) and
  report the ones whose value is not allowed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import time
from pathlib import Path
from typing import Any

from kvnode.client import BatchOp, Client
from kvnode.core import errors

log = logging.getLogger("kvload")
TIMEOUT_S = 10.0
BATCH = 100
FILL_BATCH_DEADLINE_S = 120.0
RESENDABLE = (errors.Unavailable, errors.UnknownOutcome, errors.Overloaded, errors.NotLeader)


def key_name(i: int) -> str:
    return f"k{i:05d}"


async def fill(
    client: Client, keys: int, concurrency: int = 4, *, prefix: str = "", value_size: int = 0
) -> dict[str, Any]:
    """Write every key once; returns the seconds taken and any failed batch."""
    failures: list[str] = []
    chunks = [range(s, min(s + BATCH, keys)) for s in range(0, keys, BATCH)]
    sem = asyncio.Semaphore(concurrency)

    async def one(chunk: range) -> None:
        async with sem:
            ops = [
                BatchOp.put(
                    prefix + key_name(i), f"{prefix}{key_name(i)}@fill".ljust(value_size, ".")
                )
                for i in chunk
            ]
            deadline = time.monotonic() + FILL_BATCH_DEADLINE_S
            while True:
                try:
                    result = await client.batch(ops)
                    result.raise_for_error()
                    return
                except RESENDABLE as exc:
                    # Fixed values: sending a batch again whose outcome is unknown, or that met
                    # an election, writes the same values (a busy machine saw both in a fill).
                    if time.monotonic() >= deadline:
                        failures.append(f"{chunk.start}: {type(exc).__name__}: {exc}")
                        return
                    log.warning("fill batch at %d: %s; sending it again", chunk.start, exc)
                    await asyncio.sleep(0.5)
                except errors.KvError as exc:
                    failures.append(f"{chunk.start}: {type(exc).__name__}: {exc}")
                    return

    started = time.monotonic()
    await asyncio.gather(*(one(c) for c in chunks))
    return {"seconds": time.monotonic() - started, "failures": failures}


class Worker:
    """One sequential writer/reader over its own share of the keys."""

    def __init__(self, client: Client, index: int, workers: int, keys: int) -> None:
        self.client, self.index = client, index
        self.own = [key_name(i) for i in range(index, keys, workers)]
        self.acked: dict[str, str] = {}
        self.uncertain: dict[str, list[str]] = {}
        self.errors: list[dict[str, Any]] = []
        self.stale: list[dict[str, Any]] = []
        self.samples: list[tuple[float, float, str, bool, str]] = []  # t, s, op, ok, key
        self.rng = random.Random(index)

    async def step(self, seq: int) -> None:
        key = self.rng.choice(self.own)
        value = f"{key}@{self.index}.{seq}"
        ok = await self._timed("put", self.client.put(key, value), key)
        if ok:
            self.acked[key] = value
        else:
            self.uncertain.setdefault(key, []).append(value)
        key = self.rng.choice(self.own)
        t0 = time.time()
        try:
            entry = await self.client.get(key, consistency="strong")
        except Exception as exc:  # every failure counts, whatever its type
            self._error("get", key, t0, exc)
            return
        self.samples.append((t0, time.time() - t0, "get", True, key))
        got = None if entry is None else entry.value
        want = self.acked.get(key)
        if want is not None and got != want and got not in self.uncertain.get(key, []):
            self.stale.append({"key": key, "got": got, "want": want, "t": t0})

    async def _timed(self, op: str, coro: Any, key: str) -> bool:
        t0 = time.time()
        try:
            await coro
        except Exception as exc:  # every failure counts, whatever its type
            self._error(op, key, t0, exc)
            return False
        self.samples.append((t0, time.time() - t0, op, True, key))
        return True

    def _error(self, op: str, key: str, t0: float, exc: Exception) -> None:
        self.samples.append((t0, time.time() - t0, op, False, key))
        self.errors.append({"op": op, "key": key, "t": t0, "error": f"{type(exc).__name__}: {exc}"})
        log.warning("%s %s failed: %s", op, key, exc)


async def run(client: Client, keys: int, workers: int, stop_file: Path) -> dict[str, Any]:
    """Load until `stop_file` exists; everything recorded for the test to judge."""
    crew = [Worker(client, i, workers, keys) for i in range(workers)]

    async def loop(w: Worker) -> None:
        seq = 0
        while not await asyncio.to_thread(stop_file.exists):
            seq += 1
            await w.step(seq)

    await asyncio.gather(*(loop(w) for w in crew))
    return {
        "acked": {k: v for w in crew for k, v in w.acked.items()},
        "uncertain": {k: v for w in crew for k, v in w.uncertain.items()},
        "errors": [e for w in crew for e in w.errors],
        "stale_reads": [s for w in crew for s in w.stale],
        "samples": [s for w in crew for s in w.samples],
    }


async def verify(client: Client, expected: dict[str, list[str]]) -> dict[str, Any]:
    """Strong-read every expected key; the ones missing or with a value not allowed."""
    wrong: list[dict[str, Any]] = []
    sem = asyncio.Semaphore(16)

    async def one(key: str, allowed: list[str]) -> None:
        async with sem:
            entry = await client.get(key, consistency="strong")
            got = None if entry is None else entry.value
            if got not in allowed:
                wrong.append({"key": key, "got": got, "allowed": allowed})

    started = time.monotonic()
    await asyncio.gather(*(one(k, v) for k, v in expected.items()))
    return {"seconds": time.monotonic() - started, "checked": len(expected), "wrong": wrong}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    # fill and verify run while no fault is injected: an attempt may take the whole deadline
    # (a loaded machine), instead of the default cap meant to fail over from a dead node
    calm = {"attempt_timeout": TIMEOUT_S} if args.command in ("fill", "verify") else {}
    async with Client([args.url], timeout=TIMEOUT_S, direct=args.direct, **calm) as client:
        if args.command == "fill":
            return await fill(client, args.keys, prefix=args.prefix, value_size=args.value_size)
        if args.command == "run":
            return await run(client, args.keys, args.workers, Path(args.stop_file))
        text = await asyncio.to_thread(Path(args.expected).read_text)
        expected = json.loads(text)
        return await verify(client, expected)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="the client Service URL")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--direct", action="store_true", help="route to leaders (smart client)")
    sub = parser.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fill")
    f.add_argument("--keys", type=int, required=True)
    f.add_argument("--prefix", default="", help="before each key name (ballast: other keys)")
    f.add_argument("--value-size", type=int, default=0, help="pad values to this many chars")
    r = sub.add_parser("run")
    r.add_argument("--keys", type=int, required=True)
    r.add_argument("--workers", type=int, default=4)
    r.add_argument("--stop-file", required=True)
    sub.add_parser("verify").add_argument("--expected", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    result = asyncio.run(main_async(args))
    args.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
