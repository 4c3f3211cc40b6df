"""The workload generators of ``bench compare``: zipfian shape, key and value sizes, op mix."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from bench import compare, workloads
from bench.results import Cell


def test_zipfian_matches_its_distribution() -> None:
    n, draws = 1000, 200_000
    z = workloads.Zipfian(n)
    rng = random.Random(7)
    counts = Counter(z.next(rng) for _ in range(draws))
    assert all(0 <= k < n for k in counts)
    # Ranks 0 and 1 are drawn exactly (within sampling error); the rest by Gray et al.'s
    # closed-form approximation (YCSB's), within 25 % of the exact probability.
    for rank in (0, 1):
        expected = z.probability(rank) * draws
        assert abs(counts[rank] - expected) < 5 * expected**0.5, rank
    for rank in (2, 9, 50):
        expected = z.probability(rank) * draws
        assert abs(counts[rank] - expected) < 0.25 * expected, rank
    # Skewed: rank 0 is ~1/zeta(1000, .99) ~ 13 % of draws, the top 1 % of keys take ~40 %,
    # and frequency falls with rank.
    assert 0.11 < counts[0] / draws < 0.15
    top = sum(counts[k] for k in range(n // 100)) / draws
    assert 0.35 < top < 0.50
    assert counts[0] > counts[1] > counts[3] > counts[10] > counts[100]
    assert abs(sum(z.probability(k) for k in range(n)) - 1.0) < 1e-9


def test_uniform_is_flat() -> None:
    chooser = workloads.KeyChooser("uniform", 100)
    rng = random.Random(3)
    counts = Counter(chooser.next(rng) for _ in range(100_000))
    assert len(counts) == 100
    assert max(counts.values()) < 1.25 * min(counts.values())


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="distribution"):
        workloads.KeyChooser("pareto", 10)
    with pytest.raises(ValueError, match="at least 2"):
        workloads.Zipfian(1)


def test_keys_and_values_have_fixed_sizes_and_differ_per_write() -> None:
    keys = {workloads.key_name(i) for i in (0, 7, 9_999, 123_456)}
    assert {len(k) for k in keys} == {14}
    values = [workloads.value_for("user0000000001", seq) for seq in range(200)]
    assert {len(v.encode()) for v in values} == {workloads.VALUE_BYTES}
    assert len(set(values)) == 200
    # Not one repeated byte: compressible payloads would flatter a system that compresses.
    assert len(set(values[0])) > 20


@pytest.mark.parametrize(("name", "reads"), [("a", 0.5), ("b", 0.95), ("c", 1.0), ("write", 0.0)])
def test_op_mix(name: str, reads: float) -> None:
    stream = workloads.OpStream(
        workloads.WORKLOADS[name],
        workloads.KeyChooser("uniform", 500),
        rng=random.Random(11),
        inserts=workloads.InsertCounter(500),
    )
    ops = [stream.next() for _ in range(20_000)]
    kinds = Counter(op.kind for op in ops)
    assert set(kinds) <= {"read", "update"}
    assert abs(kinds["read"] / len(ops) - reads) < 0.015
    assert all(op.key < workloads.key_name(500) for op in ops)  # existing records only


def test_load_inserts_fresh_keys_once_across_streams() -> None:
    counter = workloads.InsertCounter(100)
    streams = [
        workloads.OpStream(
            workloads.WORKLOADS["load"],
            workloads.KeyChooser("uniform", 100),
            rng=random.Random(i),
            inserts=counter,
        )
        for i in range(4)
    ]
    ops = [s.next() for _ in range(50) for s in streams]
    assert {op.kind for op in ops} == {"insert"}
    keys = [op.key for op in ops]
    assert len(set(keys)) == len(keys) == 200
    assert min(keys) == workloads.key_name(100)


def test_same_seed_same_stream() -> None:
    def stream(seed: int) -> list[workloads.Op]:
        s = workloads.OpStream(
            workloads.WORKLOADS["a"],
            workloads.KeyChooser("zipfian", 1000),
            rng=random.Random(seed),
            inserts=workloads.InsertCounter(0),
        )
        return [s.next() for _ in range(100)]

    assert stream(5) == stream(5)
    assert stream(5) != stream(6)


def test_plan_cells() -> None:
    plan = compare.Plan(
        workloads=("load", "a", "write"),
        distributions=("uniform", "zipfian"),
        connections=(1, 16),
        consistencies=("strong", "eventual"),
    )
    cells = compare.cells(plan)
    assert cells[:2] == [Cell("load", "-", "-", 1), Cell("load", "-", "-", 16)]
    assert len([c for c in cells if c.workload == "a"]) == 2 * 2 * 2
    assert {c.consistency for c in cells if c.workload == "write"} == {"-"}
    assert len(cells) == 2 + 8 + 4
    assert len(set(cells)) == len(cells)


def test_quick_preset_and_arguments() -> None:
    plan, echo, args = compare.parse_args(["--quick", "--connections", "1,64", "--seconds", "3"])
    assert plan.workloads == ("load", "a", "c", "write")
    assert plan.connections == (1, 64)
    assert plan.seconds == 3.0
    assert plan.durability == "fsync"
    assert echo
    assert args.json is None
    assert args.png is None
    with pytest.raises(SystemExit):
        compare.parse_args(["--workloads", "z"])


def test_node_settings_reach_the_plan_and_are_checked() -> None:
    plan, _, _ = compare.parse_args(
        ["--node-env", "KVNODE_FOLLOWER_READS=off", "--node-env", "KVNODE_READ_MODE=barrier"]
    )
    assert plan.node_env == ("KVNODE_FOLLOWER_READS=off", "KVNODE_READ_MODE=barrier")
    for bad in ("FOLLOWER_READS=off", "KVNODE_FOLLOWER_READS"):
        with pytest.raises(SystemExit):
            compare.parse_args(["--node-env", bad])
