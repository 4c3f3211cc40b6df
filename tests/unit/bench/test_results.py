"""The result table of ``bench compare``: percentiles, ratios to etcd, rendering."""

from __future__ import annotations

import math

import pytest

from bench import results
from bench.results import Cell


def test_nearest_rank_percentiles() -> None:
    samples = [i / 1000 for i in range(1, 1001)]  # 1..1000 ms, shuffled order does not matter
    samples.reverse()
    assert results.percentile(samples, 0.5) == 0.5
    assert results.percentile(samples, 0.99) == 0.99
    assert results.percentile(samples, 0.999) == 0.999
    assert results.percentile(samples, 1.0) == 1.0
    assert results.percentile([0.003], 0.999) == 0.003
    # With fewer than 1000 samples p99.9 is the maximum, never an invented value.
    assert results.percentile([0.001, 0.002, 0.010], 0.999) == 0.010
    assert math.isnan(results.percentile([], 0.5))
    with pytest.raises(ValueError, match="q must be"):
        results.percentile([1.0], 1.5)


def _result(system: str, cell: Cell, *, ok: int, p99_ms: float) -> results.CellResult:
    lat = [0.001] * (ok - 1) + [p99_ms / 1000]
    r = results.summarize(
        system, cell, latencies=lat, errors={"http 503": 2}, seconds=2.0, client_cpu=0.25
    )
    assert (r.ok, r.errors, r.ops_per_s) == (ok, 2, ok / 2)
    return r


def test_rows_give_ratios_to_etcd_in_the_same_cell() -> None:
    c1 = Cell("a", "zipfian", "strong", 16)
    c2 = Cell("load", "-", "-", 1)
    found = [
        _result("etcd", c1, ok=100, p99_ms=1.0),  # p99 of 100 samples: the 99th -> 1 ms
        _result("ringkv-node", c1, ok=150, p99_ms=4.0),
        _result("ringkv-node", c2, ok=10, p99_ms=4.0),  # no etcd row for this cell
    ]
    rows = results.rows(found)
    assert [r[4] for r in rows] == ["etcd", "ringkv-node", "ringkv-node"]
    etcd_row, ringkv_row, lone = rows
    assert etcd_row[10] == "1.00x"
    assert ringkv_row[5] == "75"  # 150 ok in 2 s
    assert ringkv_row[10] == "1.50x"  # ops/s ratio to etcd
    assert ringkv_row[9] == "2"
    assert lone[10:12] == ["-", "-"]
    assert results.ratio(1.0, 0.0) != results.ratio(1.0, 0.0)  # NaN, not a division error


def test_render_is_an_aligned_table() -> None:
    cell = Cell("c", "uniform", "eventual", 64)
    text = results.render([_result("etcd", cell, ok=1000, p99_ms=9.0)], title="t")
    lines = text.splitlines()
    assert lines[0] == "t"
    assert len({len(line) for line in lines[1:]}) == 1
    assert "eventual" in lines[3]
    assert "500" in lines[3]


def test_timeline_lays_cells_end_to_end_per_system() -> None:
    from bench import plot

    c1 = Cell("load", "-", "-", 1)
    c2 = Cell("c", "uniform", "strong", 1)

    def res(system: str, cell: Cell, per_second: list[int]) -> results.CellResult:
        r = results.summarize(
            system,
            cell,
            latencies=[0.002] * sum(per_second),
            errors={},
            seconds=len(per_second),
            client_cpu=0.1,
            per_second=per_second,
            per_second_p99=[0.002] * len(per_second),
        )
        return r

    found = [res("etcd", c1, [5, 6]), res("etcd", c2, [7, 8, 9]), res("ringkv-node", c1, [1])]
    series, bounds = plot.timeline(found)
    assert bounds == [(0.0, c1.label()), (2.0, c2.label())]
    by = {s.system: s for s in series}
    assert by["etcd"].t == (0.5, 1.5, 2.5, 3.5, 4.5)
    assert by["etcd"].ops == (5, 6, 7, 8, 9)
    assert by["etcd"].p99_ms == (2.0,) * 5
    assert by["ringkv-node"].t == (0.5,)
