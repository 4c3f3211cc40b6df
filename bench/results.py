"""Results of ``bench compare``: per-cell summaries and the side-by-side table (pure).

A *cell* is one workload, key distribution, read consistency and connection count; each
system runs every cell and the table puts the systems' rows next to each other with the ratio
to etcd's row of the same cell (throughput: ringkv / etcd, higher is better; p99:
ringkv / etcd, lower is better).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

REFERENCE = "etcd"


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 1]) of ``samples``; NaN when there are none.

    Nearest rank (the smallest sample with at least q of all samples at or below it) never
    invents a latency no request had, and p99.9 of fewer than 1000 samples is the maximum.
    """
    if not samples:
        return math.nan
    if not 0 <= q <= 1:
        raise ValueError(f"q must be within [0, 1], got {q}")
    ordered = sorted(samples)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class Cell:
    workload: str
    distribution: str  # "uniform" | "zipfian" | "-" (load: fresh keys)
    consistency: str  # "strong" | "eventual" | "-" (no reads)
    connections: int

    def label(self) -> str:
        return f"{self.workload} {self.distribution} {self.consistency} c{self.connections}"


@dataclass(frozen=True, slots=True)
class CellResult:
    """What one system did in one cell (latencies in seconds, successful ops only)."""

    system: str
    cell: Cell
    seconds: float
    ok: int
    errors: int
    p50: float
    p99: float
    p999: float
    client_cpu: float  # load generator CPU seconds per wall second (1.0 = one core)
    error_kinds: dict[str, int] = field(default_factory=dict)
    per_second: tuple[int, ...] = ()  # successful ops completed in each second of the run
    per_second_p99: tuple[float, ...] = ()  # p99 latency of those ops (NaN: none)

    @property
    def ops_per_s(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0


def summarize(
    system: str,
    cell: Cell,
    *,
    latencies: Sequence[float],
    errors: dict[str, int],
    seconds: float,
    client_cpu: float,
    per_second: Sequence[int] = (),
    per_second_p99: Sequence[float] = (),
) -> CellResult:
    return CellResult(
        system=system,
        cell=cell,
        seconds=seconds,
        ok=len(latencies),
        errors=sum(errors.values()),
        p50=percentile(latencies, 0.5),
        p99=percentile(latencies, 0.99),
        p999=percentile(latencies, 0.999),
        client_cpu=client_cpu,
        error_kinds=dict(errors),
        per_second=tuple(per_second),
        per_second_p99=tuple(per_second_p99),
    )


def ratio(value: float, reference: float) -> float:
    if reference <= 0 or math.isnan(reference) or math.isnan(value):
        return math.nan
    return value / reference


HEADER = [
    "workload",
    "dist",
    "reads",
    "conns",
    "system",
    "ops/s",
    "p50 ms",
    "p99 ms",
    "p99.9 ms",
    "errors",
    "x etcd ops/s",
    "x etcd p99",
    "gen cpu",
]


def rows(results: Sequence[CellResult]) -> list[list[str]]:
    """One row per result, grouped by cell in first-seen order, with ratios to etcd's row."""
    order: list[Cell] = []
    by_cell: dict[Cell, list[CellResult]] = {}
    for r in results:
        if r.cell not in by_cell:
            order.append(r.cell)
            by_cell[r.cell] = []
        by_cell[r.cell].append(r)
    out = []
    for cell in order:
        group = by_cell[cell]
        ref = next((r for r in group if r.system == REFERENCE), None)
        for r in group:
            out.append(
                [
                    cell.workload,
                    cell.distribution,
                    cell.consistency,
                    str(cell.connections),
                    r.system,
                    f"{r.ops_per_s:.0f}",
                    _ms(r.p50),
                    _ms(r.p99),
                    _ms(r.p999),
                    str(r.errors),
                    _x(ratio(r.ops_per_s, ref.ops_per_s) if ref else math.nan),
                    _x(ratio(r.p99, ref.p99) if ref else math.nan),
                    f"{r.client_cpu:.2f}",
                ]
            )
    return out


def render(results: Sequence[CellResult], *, title: str = "") -> str:
    """The table as aligned text (markdown-compatible pipes)."""
    body = rows(results)
    widths = [max(len(x) for x in col) for col in zip(HEADER, *body, strict=False)]
    lines = [title] if title else []
    lines.append("| " + " | ".join(h.ljust(w) for h, w in zip(HEADER, widths, strict=True)) + " |")
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in body:
        lines.append("| " + " | ".join(x.ljust(w) for x, w in zip(row, widths, strict=True)) + " |")
    return "\n".join(lines)


def _ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1000:.1f}"


def _x(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f}x"
