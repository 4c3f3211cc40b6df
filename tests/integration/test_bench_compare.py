"""``bench compare`` end to end: one tiny run against a real 3-node ringkv cluster (node and
smart client) and a real 3-member etcd, ~2 s per cell, one workload. Proves the harness drives
both systems, reports every row with its ratio to etcd, and leaves no process behind."""

from __future__ import annotations

import uuid

import pytest
from kvnode import localprocs

from bench import compare, results

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

MARK = "RINGKV_BENCH_SMOKE"


async def test_compare_drives_ringkv_and_etcd_end_to_end(monkeypatch: pytest.MonkeyPatch) -> None:
    marker = uuid.uuid4().hex
    monkeypatch.setenv(MARK, marker)  # inherited by etcd members, ringkv nodes and echo server
    plan = compare.Plan(
        workloads=("a",),
        distributions=("zipfian",),
        connections=(4,),
        seconds=2.0,
        records=200,
        durability="fsync",
    )
    try:
        found = await compare.compare(plan, echo=True)
    finally:
        left = localprocs.scan(lambda env: env.get(MARK) == marker)
    assert left == [], f"processes left behind: {left}"

    by_system = {r.system: r for r in found}
    assert set(by_system) == {"etcd", "ringkv-node", "ringkv-client"}
    cell = results.Cell("a", "zipfian", "strong", 4)
    for system, r in by_system.items():
        assert r.cell == cell
        # Every op of a healthy cluster succeeds; a closed loop of 4 does at least a few.
        assert r.errors == 0, (system, r.error_kinds)
        assert r.ok >= 10, (system, r.ok)
        assert 0 < r.p50 <= r.p99 <= r.p999, system
        assert r.client_cpu > 0
    table = results.render(compare.order_for_table(found))
    rows = [line for line in table.splitlines() if line.startswith("| a ")]
    assert [row.split("|")[5].strip() for row in rows] == ["etcd", "ringkv-node", "ringkv-client"]
    assert all(row.split("|")[11].strip().endswith("x") for row in rows)  # ratio to etcd
