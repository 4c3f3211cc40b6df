"""The register model the chaos suite checks: deletes, CAS that reports the version it saw,
eventual reads, lost acknowledged writes and the JSON form of a history. Hand-made violating
histories must be caught; valid tricky ones (overlaps, unknown outcomes) must pass."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.linearizability import (
    Op,
    check,
    dump,
    eventual_violations,
    load,
    lost_writes,
)


def op(kind: str, t0: float, t1: float, **kw: object) -> Op:
    return Op(key="k", kind=kind, invoke=t0, complete=t1, **kw)  # type: ignore[arg-type]


def w(t0: float, t1: float, value: str, version: int) -> Op:
    return op("write", t0, t1, value=value, version=version)


def r(t0: float, t1: float, value: str | None, version: int | None = None, **kw: object) -> Op:
    return op("read", t0, t1, value=value, version=version, **kw)


def unknown(kind: str, t0: float, **kw: object) -> Op:
    return Op(key="k", kind=kind, invoke=t0, outcome="unknown", **kw)  # type: ignore[arg-type]


# -- deletes -----------------------------------------------------------------------------------
def test_delete_makes_the_key_absent_and_reports_whether_it_existed() -> None:
    assert check([w(0, 1, "a", 5), op("delete", 2, 3, existed=True), r(4, 5, None)]).ok
    assert check([op("delete", 0, 1, existed=False), r(2, 3, None)]).ok
    # a read of the deleted value after the delete returned: stale
    assert not check([w(0, 1, "a", 5), op("delete", 2, 3, existed=True), r(4, 5, "a", 5)]).ok
    # "existed" must match the state
    assert not check([w(0, 1, "a", 5), op("delete", 2, 3, existed=False)]).ok
    assert not check([op("delete", 0, 1, existed=True)]).ok


def test_unknown_delete_may_or_may_not_apply() -> None:
    assert check([w(0, 1, "a", 5), unknown("delete", 2), r(3, 4, "a", 5)]).ok
    assert check([w(0, 1, "a", 5), unknown("delete", 2), r(3, 4, None)]).ok
    # but a value cannot come back once a read saw the delete
    assert not check([w(0, 1, "a", 5), unknown("delete", 2), r(3, 4, None), r(5, 6, "a", 5)]).ok


# -- compare-and-set ---------------------------------------------------------------------------
def test_cas_that_succeeded_on_a_wrong_version_is_caught() -> None:
    base = [w(0, 1, "a", 5), w(2, 3, "b", 6)]
    assert not check(
        [*base, op("cas", 4, 5, value="c", version=7, if_version=5, succeeded=True)]
    ).ok
    assert check([*base, op("cas", 4, 5, value="c", version=7, if_version=6, succeeded=True)]).ok


def test_cas_by_value_on_a_wrong_value_is_caught() -> None:
    base = [w(0, 1, "a", 5), w(2, 3, "b", 6)]
    assert not check(
        [*base, op("cas", 4, 5, value="c", version=7, if_value="a", succeeded=True)]
    ).ok
    assert check([*base, op("cas", 4, 5, value="c", version=7, if_value="b", succeeded=True)]).ok
    # by value on an absent key never holds
    assert not check([op("cas", 0, 1, value="c", version=7, if_value="a", succeeded=True)]).ok


def test_failed_cas_must_agree_with_the_version_it_reports() -> None:
    base = [w(0, 1, "a", 5)]
    saw = {"value": "c", "if_version": 4, "succeeded": False}
    assert check([*base, op("cas", 2, 3, seen_version=5, **saw)]).ok
    assert not check([*base, op("cas", 2, 3, seen_version=3, **saw)]).ok  # never current
    assert not check([*base, op("cas", 2, 3, seen_version=0, **saw)]).ok  # saw "absent"
    assert check([op("cas", 0, 1, seen_version=0, value="c", if_value="a", succeeded=False)]).ok


def test_failed_cas_pins_the_version_of_an_unknown_write() -> None:
    ops = [
        unknown("write", 0, value="a"),
        op("cas", 1, 2, value="c", if_version=9, succeeded=False, seen_version=7),
        r(3, 4, "a", 7),
    ]
    assert check(ops).ok
    assert not check([*ops[:2], r(3, 4, "a", 8)]).ok


def test_concurrent_cas_race_has_one_winner_per_version() -> None:
    base = [w(0, 1, "a", 5)]
    race = [
        op("cas", 2, 6, value="b", version=6, if_version=5, succeeded=True),
        op("cas", 3, 5, value="c", if_version=5, succeeded=False, seen_version=6),
        r(7, 8, "b", 6),
    ]
    # the loser saw the winner's version: it was linearized after the winner
    assert check(base + race).ok
    # a loser that saw the old version had a true precondition: it could not have failed
    saw_old = op("cas", 3, 5, value="c", if_version=5, succeeded=False, seen_version=5)
    assert not check([*base, race[0], saw_old, race[2]]).ok


# -- eventual reads ----------------------------------------------------------------------------
def test_eventual_reads_may_be_stale_but_never_invent_values() -> None:
    ops = [
        w(0, 1, "a", 5),
        w(2, 3, "b", 6),
        r(4, 5, "a", 5, strong=False),  # stale: fine for eventual
        r(4, 5, None, strong=False),  # older still: fine
    ]
    assert check(ops).ok  # eventual reads are not part of the search
    assert eventual_violations(ops) == []
    assert eventual_violations([*ops, r(6, 7, "zzz", 9, strong=False)])
    # a value written only after the read returned was not there to be read
    assert eventual_violations([r(0, 1, "c", 7, strong=False), w(2, 3, "c", 7)])
    # the right value with a version its write did not get
    assert eventual_violations([w(0, 1, "a", 5), r(2, 3, "a", 4, strong=False)])
    # an unknown write may have produced it, at any version
    assert (
        eventual_violations([unknown("write", 0, value="u"), r(1, 2, "u", 3, strong=False)]) == []
    )
    # a CAS answered "failed" did not write its value
    failed = op("cas", 0, 1, value="f", if_version=9, succeeded=False, seen_version=0)
    assert eventual_violations([failed, r(2, 3, "f", 4, strong=False)])


# -- the final state ---------------------------------------------------------------------------
def test_lost_acknowledged_write_is_caught() -> None:
    ops = [w(0, 1, "a", 5), w(2, 3, "b", 6)]
    assert lost_writes(ops, {"k": ("b", 6)}) == []
    assert len(lost_writes(ops, {"k": ("a", 5)})) == 1  # "b" lost
    assert len(lost_writes(ops, {"k": None})) == 2
    # a delete that returned after "b" began accounts for absence
    assert lost_writes([*ops, op("delete", 2.5, 4, existed=True)], {"k": None}) == []
    # a write overlapping "b" may have been linearized after it
    assert lost_writes([*ops, w(2.5, 2.7, "c", 7)], {"k": ("c", 7)}) == []
    # an unknown write may have been linearized after "b"
    assert lost_writes([*ops, unknown("write", 1.5, value="u")], {"k": ("u", 8)}) == []
    early = [w(-2, -1, "x", 4), *ops]
    assert len(lost_writes(early, {"k": ("x", 4)})) == 2


# -- dump/load ---------------------------------------------------------------------------------
def test_history_round_trips_through_json_form() -> None:
    ops = [w(0, 1, "a", 5), unknown("write", 2, value="b"), r(3, 4, None, strong=False)]
    back = load(dump(ops))
    assert back == ops
    assert math.isinf(back[1].complete)


# -- any sequential history of every kind is linearizable ---------------------------------------
@st.composite
def sequential_history(draw: st.DrawFn) -> list[Op]:
    value: str | None = None
    version = 0
    t = 0.0
    ops: list[Op] = []
    for i in range(draw(st.integers(0, 25))):
        kind = draw(st.sampled_from(["read", "eventual", "write", "delete", "cas_v", "cas_val"]))
        if kind in ("read", "eventual"):
            ops.append(r(t, t + 1, value, version if value else None, strong=kind == "read"))
        elif kind == "write":
            version += 1
            value = f"v{i}"
            ops.append(w(t, t + 1, value, version))
        elif kind == "delete":
            version += 1
            ops.append(op("delete", t, t + 1, existed=value is not None))
            value = None
        else:
            if kind == "cas_v":
                expect = draw(st.integers(0, version + 1))
                holds = value is None if expect == 0 else (value is not None and expect == version)
                cond: dict[str, object] = {"if_version": expect}
            else:
                want = draw(st.sampled_from([value or "v0", "nope"]))
                holds = value == want
                cond = {"if_value": want}
            seen = version if value is not None else 0
            if holds:
                version += 1
                value = f"v{i}"
            ops.append(
                op(
                    "cas",
                    t,
                    t + 1,
                    value=f"v{i}",
                    version=version if holds else None,
                    seen_version=None if holds else seen,
                    succeeded=holds,
                    **cond,
                )
            )
        t += 2
    return ops


@given(sequential_history())
@settings(max_examples=150, deadline=None)
def test_any_sequential_history_of_every_kind_passes(ops: list[Op]) -> None:
    verdict = check(ops)
    assert verdict.ok, verdict.detail
    assert eventual_violations(ops) == []
    final = {"k": None}
    writes = [o for o in ops if o.kind != "read" and not (o.kind == "cas" and not o.succeeded)]
    if writes and writes[-1].kind != "delete":
        final = {"k": (writes[-1].value, writes[-1].version)}
    assert lost_writes(ops, final) == []  # type: ignore[arg-type]


# -- unknown operations nobody observed ---------------------------------------------------------
def test_an_unobserved_unknown_write_is_still_used_when_needed() -> None:
    # the failed CAS is only possible if the unknown write applied (its version unknown):
    # the first, pruned search fails and the full one must find it
    ops = [
        w(0, 1, "a", 5),
        unknown("write", 2, value="u"),
        op("cas", 3, 4, value="c", if_version=5, succeeded=False),
    ]
    assert check(ops).ok
    assert not check([ops[0], ops[2]]).ok


def test_many_unobserved_unknown_writes_do_not_blow_up_a_valid_history() -> None:
    ops = [unknown("write", 0, value=f"u{i}") for i in range(40)]
    ops += [w(1 + 2 * i, 2 + 2 * i, f"v{i}", 10 + i) for i in range(40)]
    ops += [r(100, 101, "v39", 49)]
    verdict = check(ops, budget=10_000)
    assert verdict.ok


# -- concurrent histories made from a real execution ---------------------------------------------
@st.composite
def concurrent_history(draw: st.DrawFn) -> list[Op]:
    """Run random ops one by one on a real register at instants 10, 20, 30, ...; then give each
    op an interval around its instant (so ops overlap, up to a few at a time), make some
    writes "unknown" (answer lost) and add some "fail" ops that never applied. The result is
    linearizable by construction (the instants are a linearization)."""
    value: str | None = None
    version = 0
    ops: list[Op] = []
    for i in range(draw(st.integers(1, 30))):
        at = 10.0 * (i + 1)
        t0 = at - draw(st.floats(0.1, 25.0))
        t1 = at + draw(st.floats(0.1, 25.0))
        kind = draw(st.sampled_from(["read", "read", "write", "delete", "cas_v", "cas_val"]))
        if kind == "read":
            ops.append(r(t0, t1, value, version if value is not None else None))
            continue
        if kind == "cas_v":
            expect = draw(st.sampled_from([version, version + 1, 0]))
            holds = value is None if expect == 0 else value is not None and expect == version
            cond: dict[str, object] = {"if_version": expect}
        elif kind == "cas_val":
            want = draw(st.sampled_from([value or "none", "nope"]))
            holds, cond = value == want, {"if_value": want}
        else:
            holds, cond = True, {}
        seen = version if value is not None else 0
        if holds:
            version += draw(st.integers(1, 3))
            value = None if kind == "delete" else f"v{i}"
        if draw(st.integers(0, 9)) == 0 and kind != "read":  # the answer was lost
            kw = {"value": f"v{i}"} if kind != "delete" else {}
            ops.append(unknown("cas" if kind.startswith("cas") else kind, t0, **cond, **kw))
        elif kind == "delete":
            ops.append(op("delete", t0, t1, existed=seen != 0))
        elif kind == "write":
            ops.append(w(t0, t1, f"v{i}", version))
        else:
            extra = {"version": version} if holds else {"seen_version": seen}
            ops.append(op("cas", t0, t1, value=f"v{i}", succeeded=holds, **cond, **extra))
        if draw(st.integers(0, 9)) == 0:  # a write that certainly failed: never applied
            ops.append(op("write", t0, t1, value=f"failed{i}", outcome="fail"))
    return ops


@given(concurrent_history())
@settings(max_examples=200, deadline=None)
def test_concurrent_histories_of_a_real_register_pass(ops: list[Op]) -> None:
    verdict = check(ops)
    assert verdict.ok, verdict.detail


@given(concurrent_history(), st.data())
@settings(max_examples=100, deadline=None)
def test_a_read_of_a_never_written_value_is_always_caught(
    ops: list[Op], data: st.DataObject
) -> None:
    reads = [i for i, o in enumerate(ops) if o.kind == "read"]
    if not reads:
        return
    i = data.draw(st.sampled_from(reads))
    bad = Op(key="k", kind="read", invoke=ops[i].invoke, complete=ops[i].complete,
             value="never-written", version=10_000)  # fmt: skip
    assert not check([*ops[:i], bad, *ops[i + 1 :]]).ok
