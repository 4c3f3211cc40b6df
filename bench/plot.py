"""``bench compare --png``: throughput and p99 per second over the whole run, one line per
system, cells laid end to end (a vertical line at each cell boundary, labelled).

``timeline`` (pure) lays the per-second series out; ``draw`` needs matplotlib, which is not a
project dependency (``pip install matplotlib``): the table never depends on it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from bench import results


@dataclass(frozen=True, slots=True)
class Series:
    system: str
    t: tuple[float, ...]  # seconds on the common axis
    ops: tuple[int, ...]
    p99_ms: tuple[float, ...]


def timeline(found: Sequence[results.CellResult]) -> tuple[list[Series], list[tuple[float, str]]]:
    """Per system, its cells' seconds one after the other in first-seen cell order; plus the
    start of each cell on that axis with its label. Systems share the axis cell by cell."""
    cells: list[results.Cell] = []
    width: dict[results.Cell, int] = {}
    for r in found:
        if r.cell not in width:
            cells.append(r.cell)
        width[r.cell] = max(width.get(r.cell, 0), len(r.per_second))
    start, at = {}, 0
    for c in cells:
        start[c] = at
        at += width[c]
    by_system: dict[str, list[tuple[float, int, float]]] = {}
    for r in found:
        points = by_system.setdefault(r.system, [])
        for i, n in enumerate(r.per_second):
            p99 = r.per_second_p99[i] if i < len(r.per_second_p99) else math.nan
            points.append((start[r.cell] + i + 0.5, n, p99 * 1000))
    series = [
        Series(system, *map(tuple, zip(*sorted(points), strict=True)))
        for system, points in by_system.items()
        if points
    ]
    return series, [(float(start[c]), c.label()) for c in cells]


def draw(found: Sequence[results.CellResult], path: str, *, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series, bounds = timeline(found)
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(max(10, len(bounds)), 7))
    for s in series:
        top.plot(s.t, s.ops, label=s.system, linewidth=1)
        bottom.plot(s.t, s.p99_ms, label=s.system, linewidth=1)
    for x, label in bounds:
        for ax in (top, bottom):
            ax.axvline(x, color="grey", linewidth=0.5)
        top.text(x + 0.1, 1.0, label, rotation=90, va="top", fontsize=6,
                 transform=top.get_xaxis_transform())  # fmt: skip
    top.set_ylabel("ops/s")
    bottom.set_ylabel("p99 ms")
    bottom.set_yscale("log")
    bottom.set_xlabel("seconds (cells end to end)")
    top.legend(loc="upper right", fontsize=7)
    top.set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
