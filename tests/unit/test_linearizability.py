"""The linearizability checker on hand-made histories: correct ones pass, the classic anomalies
are caught, unknown outcomes are allowed either way, and any sequential history passes."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.linearizability import Op, SearchBudgetExceeded, check, check_key


def w(t0: float, t1: float, value: str, version: int, **kw: object) -> Op:
    return Op(key="k", kind="write", invoke=t0, complete=t1, value=value, version=version, **kw)  # type: ignore[arg-type]


def r(t0: float, t1: float, value: str | None, version: int | None = None, **kw: object) -> Op:
    return Op(key="k", kind="read", invoke=t0, complete=t1, value=value, version=version, **kw)  # type: ignore[arg-type]


def cas(t0: float, t1: float, value: str, version: int, ok: bool, **kw: object) -> Op:
    return Op(
        key="k",
        kind="cas",
        invoke=t0,
        complete=t1,
        value=value,
        version=version,
        succeeded=ok,
        **kw,
    )  # type: ignore[arg-type]


def test_sequential_and_overlapping_histories_pass() -> None:
    assert check([r(0, 1, None), w(2, 3, "a", 5), r(4, 5, "a", 5)]).ok
    # a read overlapping a write may see either value
    assert check([w(0, 10, "a", 5), r(1, 2, None), r(3, 4, "a", 5)]).ok
    # two overlapping writes: reads after both agree on one order
    assert check([w(0, 5, "a", 5), w(0, 5, "b", 6), r(6, 7, "a", 5), r(8, 9, "a", 5)]).ok


def test_stale_read_after_a_completed_write_is_caught() -> None:
    v = check([w(0, 1, "a", 5), w(2, 3, "b", 6), r(4, 5, "a", 5)])
    assert not v.ok
    assert v.key == "k"


def test_read_going_back_in_time_is_caught() -> None:
    # both reads overlap the write, but once one saw the new value a later one cannot see the old
    assert not check([w(0, 10, "b", 6), r(1, 2, "b", 6), r(3, 4, None)]).ok


def test_lost_write_is_caught() -> None:
    assert not check([w(0, 1, "a", 5), r(2, 3, None)]).ok


def test_read_of_a_never_written_value_is_caught() -> None:
    assert not check([w(0, 1, "a", 5), r(2, 3, "zzz", 9)]).ok


def test_cas_that_succeeded_twice_is_caught() -> None:
    base = [w(0, 1, "a", 5)]
    both = [cas(2, 4, "b", 6, True, if_version=5), cas(2, 4, "c", 7, True, if_version=5)]
    assert not check(base + both).ok
    by_value = [cas(2, 4, "b", 6, True, if_value="a"), cas(2, 4, "c", 7, True, if_value="a")]
    assert not check(base + by_value).ok
    one = [cas(2, 4, "b", 6, True, if_version=5), cas(2, 4, "c", 7, False, if_version=5)]
    assert check(base + one).ok


def test_cas_if_version_zero_means_only_if_absent() -> None:
    assert check([cas(0, 1, "a", 5, True, if_version=0), r(2, 3, "a", 5)]).ok
    assert not check([w(0, 1, "a", 5), cas(2, 3, "b", 6, True, if_version=0)]).ok


def test_failed_cas_must_have_had_a_false_precondition() -> None:
    assert not check([w(0, 1, "a", 5), cas(2, 3, "b", 6, False, if_version=5)]).ok
    assert check([w(0, 1, "a", 5), cas(2, 3, "b", 6, False, if_version=4)]).ok


def test_unknown_write_may_or_may_not_take_effect() -> None:
    unknown = Op(key="k", kind="write", invoke=0, outcome="unknown", value="a")
    assert unknown.complete == math.inf
    assert check([unknown, r(1, 2, None)]).ok  # not applied
    assert check([unknown, r(1, 2, "a", 5)]).ok  # applied (its version learnt from the read)
    assert check([unknown, r(1, 2, None), r(3, 4, "a", 5)]).ok  # applied later
    # but never applied twice, nor undone
    assert not check([unknown, r(1, 2, "a", 5), r(3, 4, None)]).ok
    # and never before it was invoked
    late = Op(key="k", kind="write", invoke=5, outcome="unknown", value="a")
    assert not check([late, r(1, 2, "a", 5)]).ok


def test_failed_operations_are_ignored() -> None:
    failed = Op(key="k", kind="write", invoke=0, complete=1, outcome="fail", value="a")
    assert check([failed, r(2, 3, None)]).ok
    assert not check([failed, r(2, 3, "a", 5)]).ok


def test_keys_are_checked_independently() -> None:
    other = Op(key="j", kind="write", invoke=0, complete=1, value="x", version=3)
    assert check([w(0, 1, "a", 5), other, r(2, 3, "a", 5)]).ok
    bad = check([other, Op(key="j", kind="read", invoke=2, complete=3, value=None)])
    assert not bad.ok
    assert bad.key == "j"


def test_search_is_bounded() -> None:
    # many fully concurrent unknown writes and a read that matches none: a large search space
    ops = [Op(key="k", kind="write", invoke=0, outcome="unknown", value=f"v{i}") for i in range(18)]
    ops.append(r(1, 2, "never", 1))
    with pytest.raises(SearchBudgetExceeded):
        check_key(ops, budget=1000)


@st.composite
def sequential_history(draw: st.DrawFn) -> list[Op]:
    """Ops run one after another against a real register: always linearizable."""
    value: str | None = None
    version = 0
    t = 0.0
    ops: list[Op] = []
    for _ in range(draw(st.integers(0, 30))):
        kind = draw(st.sampled_from(["read", "write", "cas_version", "cas_value"]))
        key = draw(st.sampled_from(["k", "j"]))
        if key == "j":  # a second key that only ever sees reads of absent
            ops.append(Op(key="j", kind="read", invoke=t, complete=t + 1, value=None))
        elif kind == "read":
            ops.append(r(t, t + 1, value, version if value is not None else None))
        elif kind == "write":
            version += 1
            value = draw(st.sampled_from(["a", "b", "c"]))
            ops.append(w(t, t + 1, value, version))
        else:
            new = draw(st.sampled_from(["a", "b", "c"]))
            if kind == "cas_version":
                expect = draw(st.integers(0, version + 1))
                # ringkv: if_version=0 means "only if absent"
                holds = value is None if expect == 0 else (value is not None and expect == version)
                cond: dict[str, object] = {"if_version": expect}
            else:
                exp_value = draw(st.sampled_from(["a", "b", "c"]))
                holds = value == exp_value
                cond = {"if_value": exp_value}
            if holds:
                version += 1
                value = new
            ops.append(cas(t, t + 1, new, version, holds, **cond))
        t += 2
    return ops


@given(sequential_history(), st.randoms())
@settings(max_examples=200, deadline=None)
def test_any_sequential_history_passes_in_any_listing_order(ops: list[Op], rnd) -> None:  # type: ignore[no-untyped-def]
    rnd.shuffle(ops)
    verdict = check(ops)
    assert verdict.ok, verdict.detail
