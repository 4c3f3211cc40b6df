"""The chaos runner's pure parts: availability during and outside fault windows, the verdicts
it draws from a history, and the table it prints."""

from __future__ import annotations

from tests.chaos.__main__ import table
from tests.chaos.nemesis import Window
from tests.chaos.runner import RunResult, availability, judge
from tests.support.linearizability import Op


def ok_at(t: float, outcome: str = "ok") -> Op:
    return Op(key="k", kind="read", invoke=t - 0.01, complete=t, outcome=outcome, value=None)


def test_availability_splits_ok_ops_by_fault_window() -> None:
    ops = [ok_at(t) for t in (1, 2, 3, 11, 12)] + [ok_at(5, "fail"), ok_at(6)]
    windows = [Window("kill", "node-0", 5.0, 7.0)]
    during, calm = availability(ops, windows, 0.0, 20.0)
    assert during == 0.5  # one ok op in 2 s
    assert calm == 5 / 18


def test_judge_counts_violations_and_lost_writes() -> None:
    w = Op(key="k", kind="write", invoke=0, complete=1, value="a", version=5)
    stale = Op(key="k", kind="read", invoke=2, complete=3, value=None)
    result = RunResult("kill-leader", 1, 10.0)
    judge(result, [w, stale], {"k": None})
    assert len(result.violations) == 1
    assert len(result.lost) == 1
    assert result.ops == 2
    assert not result.passed
    good = RunResult("kill-leader", 1, 10.0)
    judge(good, [w], {"k": ("a", 5)})
    assert good.passed


def test_table_sums_runs_per_scenario_and_names_failures() -> None:
    a = RunResult("partition", 1, 10.0, ops=100, faults=2, ok_per_s_faults=5.0, ok_per_s_calm=50)
    b = RunResult("partition", 2, 10.0, ops=50, faults=1, ok_per_s_faults=7.0, ok_per_s_calm=70)
    bad = RunResult("disk-full", 1, 10.0, ops=10, lost=["x"], kept="/tmp/kept")
    text = table([a, b, bad])
    row = next(line for line in text.splitlines() if line.startswith("partition"))
    assert row.split()[1:3] == ["2", "150"]
    assert row.endswith("ok")
    assert "FAILED disk-full seed 1" in text
    assert "/tmp/kept" in text
