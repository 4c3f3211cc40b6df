"""``./dev chaos``: run fault scenarios against real local clusters and check the histories.

    python -m tests.chaos [--seed N] [--scenario NAME]... [--duration S] [--runs R]

Re-executes itself inside fresh namespaces (``tests.chaos.sandbox``), runs each scenario
``runs`` times (seeds N, N+1, ...), prints a table and exits non-zero when any run found a
violation, a lost write, an undecided history or an error. ``--json FILE`` also writes every
run's result. Failed runs keep their history and node logs under ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import tempfile
from dataclasses import asdict

from tests.chaos import sandbox
from tests.chaos.nemesis import SCENARIOS
from tests.chaos.runner import RunResult, run_once

log = logging.getLogger("tests.chaos")


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="./dev chaos", description=__doc__.split("\n")[0])
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--scenario", action="append", choices=sorted(SCENARIOS), default=None)
    p.add_argument("--duration", type=float, default=30.0, help="seconds of faults per run")
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "ringkv-chaos"))
    p.add_argument("--json", default=None, help="write every run's result to this file")
    p.add_argument(
        "--eventual-as-strong",
        action="store_true",
        help="checker self-test: check eventual reads as if strong (stale reads must be caught)",
    )
    return p.parse_args(argv)


def table(results: list[RunResult]) -> str:
    head = (
        f"{'scenario':<14} {'runs':>4} {'ops checked':>11} {'violations':>10} {'lost writes':>11}"
        f" {'undecided':>9} {'unknown':>7} {'faults':>6} {'ok/s in faults':>14}"
        f" {'ok/s calm':>9}  result"
    )
    rows = [head, "-" * len(head)]
    for name in dict.fromkeys(r.scenario for r in results):
        runs = [r for r in results if r.scenario == name]
        n = len(runs)
        rows.append(
            f"{name:<14} {n:>4} {sum(r.ops for r in runs):>11}"
            f" {sum(len(r.violations) for r in runs):>10} {sum(len(r.lost) for r in runs):>11}"
            f" {sum(len(r.undecided) for r in runs):>9} {sum(r.unknown_ops for r in runs):>7}"
            f" {sum(r.faults for r in runs):>6}"
            f" {sum(r.ok_per_s_faults for r in runs) / n:>14.1f}"
            f" {sum(r.ok_per_s_calm for r in runs) / n:>9.1f}"
            f"  {'ok' if all(r.passed for r in runs) else 'FAILED'}"
        )
    for r in results:
        if r.crashed:
            rows.append(f"note: {r.scenario} seed {r.seed}: node failures (restarted): {r.crashed}")
        if not r.passed:
            rows.append(f"FAILED {r.scenario} seed {r.seed}: {r.error or ''} kept in {r.kept}")
            rows += [f"  {v.splitlines()[0]}" for v in (r.violations + r.lost + r.undecided)[:5]]
    return "\n".join(rows)


async def run_all(args: argparse.Namespace) -> list[RunResult]:
    results = []
    for name in args.scenario or list(SCENARIOS):
        for i in range(args.runs):
            seed = args.seed + i
            log.info("scenario %s seed %d (%.0fs)", name, seed, args.duration)
            result = await run_once(
                name,
                seed=seed,
                duration=args.duration,
                root=args.out,
                eventual_as_strong=args.eventual_as_strong,
            )
            log.info("  -> %s", "passed" if result.passed else f"FAILED, kept in {result.kept}")
            results.append(result)
    return results


def main(argv: list[str]) -> int:
    if not sandbox.inside():
        os.execvpe("unshare", sandbox.command(argv), sandbox.environment())
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("kvnode").setLevel(logging.WARNING)
    args = parse(argv)
    results = asyncio.run(run_all(args))
    print(table(results))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump([asdict(r) | {"passed": r.passed} for r in results], f, indent=1)
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
