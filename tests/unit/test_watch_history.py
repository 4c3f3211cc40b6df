"""The watch history and resume token (``kvnode.watch``): pure logic, property-tested against a
plain list of every change ever recorded."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kvnode.core import errors
from kvnode.watch import cursor
from kvnode.watch.history import ChangeHistory, HistoryLimits
from kvnode.watch.model import WHOLE, Change, Effect, Kind, Position

KEYS = st.sampled_from(["a/1", "a/2", "a/3", "b/1", "b/2", "ab"])
EFFECT = st.builds(
    Effect,
    kind=st.sampled_from(list(Kind)),
    key=KEYS,
    value=st.one_of(st.none(), st.text(max_size=40)),
)
# Entries: (index gap, effects); an empty list is a barrier or failed CAS (no change).
ENTRIES = st.lists(st.tuples(st.integers(1, 3), st.lists(EFFECT, max_size=4)), max_size=40)


def build(entries, limits: HistoryLimits, start: int = 0):
    """A history fed ``entries`` and the reference list of every (change, position) recorded."""
    h = ChangeHistory(3, limits=limits, kept_after=start)
    everything: list[Change] = []
    index = start
    for gap, effects in entries:
        index += gap
        h.record(index, effects, ts_ms=index * 10)
        everything += [
            Change(3, index, seq, e.kind, e.key, e.value, e.prev_version, None, index * 10)
            for seq, e in enumerate(effects)
        ]
    return h, everything, index


def drain(h: ChangeHistory, after: Position, prefix: str, page: int) -> list[Change]:
    got: list[Change] = []
    for _ in range(1000):
        read = h.read(after, prefix=prefix, max_changes=page)
        assert not read.compacted
        assert not read.closed
        if not read.changes:
            assert read.position >= after
            return got
        assert all(rev > after for _, rev in read.changes)
        got += [c for c, _ in read.changes]
        assert read.position >= read.changes[-1][1]  # beyond it once caught up
        after = read.position
    raise AssertionError("read never caught up")


@settings(max_examples=300, deadline=None)
@given(
    entries=ENTRIES,
    prefix=st.sampled_from(["", "a/", "b", "ab", "zz"]),
    page=st.integers(1, 5),
    max_entries=st.integers(1, 50),
    start_pick=st.integers(0, 200),
)
def test_reads_return_exactly_the_kept_changes_after_a_position(
    entries, prefix, page, max_entries, start_pick
) -> None:
    h, everything, last = build(entries, HistoryLimits(max_entries=max_entries))
    kept_after = h.kept_after
    after = Position(min(start_pick, last))
    read = h.read(after, prefix=prefix)
    if after.index < kept_after:
        assert read.compacted
        return
    want = [c for c in everything if c.position > after and c.key.startswith(prefix)]
    assert drain(h, after, prefix, page) == want
    assert h.usage()[0] <= max_entries


@settings(max_examples=200, deadline=None)
@given(entries=ENTRIES, prefix=st.sampled_from(["", "a/", "b"]), cut=st.integers(0, 100))
def test_resuming_after_any_delivered_change_continues_exactly_once(entries, prefix, cut) -> None:
    h, _everything, _ = build(entries, HistoryLimits(max_entries=1000))
    first = h.read(Position(0), prefix=prefix, max_changes=10_000)
    delivered = list(first.changes)
    if not delivered:
        return
    change, rev = delivered[min(cut, len(delivered) - 1)]
    rest = drain(h, rev, prefix, 3)
    before = [c for c, _ in delivered[: delivered.index((change, rev)) + 1]]
    assert before + rest == [c for c, _ in delivered]


def test_bytes_bound_evicts_oldest_and_keeps_the_newest_entry() -> None:
    h = ChangeHistory(0, limits=HistoryLimits(max_entries=100, max_bytes=1000), kept_after=0)
    for i in range(1, 21):
        h.record(i, [Effect(Kind.PUT, f"k{i}", "x" * 100)])
    entries, used = h.usage()
    assert used <= 1000
    assert entries == 5
    assert h.read(Position(h.kept_after)).changes[0][0].index == h.kept_after + 1
    assert h.read(Position(h.kept_after - 1)).compacted
    h.record(21, [Effect(Kind.PUT, "huge", "y" * 5000)])  # alone over the bound: still kept
    assert h.usage()[0] == 1
    assert h.kept_after == 20
    assert [c.key for c, _ in h.read(Position(20)).changes] == ["huge"]


def test_partial_entry_positions_and_whole_entry_positions() -> None:
    h = ChangeHistory(0, limits=HistoryLimits(), kept_after=0)
    h.record(
        5, [Effect(Kind.PUT, "a", "1"), Effect(Kind.PUT, "b", "2"), Effect(Kind.PUT, "a2", "3")]
    )
    revs = [rev.to_text() for _, rev in h.read(Position(0), prefix="a").changes]
    assert revs == ["5.0", "5"]  # the last matching change of the entry covers all of it
    assert [c.key for c, _ in h.read(Position(5, 0)).changes] == ["b", "a2"]
    assert h.read(Position(5)).changes == ()
    # a partial position needs its entry; once evicted that is compacted, the whole one is not
    h2 = ChangeHistory(0, limits=HistoryLimits(max_entries=1), kept_after=0)
    h2.record(5, [Effect(Kind.PUT, "a", "1"), Effect(Kind.PUT, "b", "2")])
    h2.record(6, [Effect(Kind.PUT, "c", "3")])
    assert h2.read(Position(5, 0)).compacted
    assert [c.key for c, _ in h2.read(Position(5)).changes] == ["c"]


def test_replayed_entries_snapshot_reset_and_close() -> None:
    h = ChangeHistory(1, limits=HistoryLimits(), kept_after=10)
    h.record(9, [Effect(Kind.PUT, "old", "x")])  # at or below the store's applied index
    assert h.read(Position(10)).changes == ()
    assert h.last_index == 10
    h.record(11, [Effect(Kind.PUT, "k", "v")])
    h.record(12, [])  # a barrier: moves the position, no change
    assert h.read(Position(11)).position == Position(12, WHOLE)
    woken = threading.Event()
    assert h.read(Position(12), waker=woken.set).changes == ()
    h.reset(50)  # a snapshot replaced the data: nothing before 50 is known any more
    assert woken.is_set()
    assert h.read(Position(12)).compacted
    assert not h.read(Position(50)).compacted
    h.close()
    assert h.read(Position(50)).closed


def test_waker_runs_on_next_record_once_and_can_be_unregistered() -> None:
    h = ChangeHistory(0, limits=HistoryLimits(), kept_after=0)
    calls: list[int] = []
    h.read(Position(0), waker=lambda: calls.append(1))
    h.record(1, [Effect(Kind.PUT, "a", "1")])
    h.record(2, [Effect(Kind.PUT, "a", "2")])
    assert calls == [1]
    h.read(Position(2), waker=lambda: calls.append(2))
    h.unregister(h._wakers[0])
    h.record(3, [Effect(Kind.PUT, "a", "3")])
    assert calls == [1]


@given(
    positions=st.lists(
        st.tuples(st.integers(0, 2**40), st.one_of(st.just(WHOLE), st.integers(0, 500))),
        min_size=1,
        max_size=64,
    )
)
def test_token_round_trip(positions) -> None:
    pos = {p: Position(i, s) for p, (i, s) in enumerate(positions)}
    token = cursor.encode(pos, len(pos))
    assert cursor.partitions_of(token) == len(pos)
    assert cursor.decode(token, len(pos)) == pos
    assert cursor.parse_from(token, len(pos)) == pos


@pytest.mark.parametrize(
    ("raw", "partitions", "problem"),
    [
        ("w1.4.1~2~3", 4, "holds 3 positions"),
        ("w1.3.1~2~3", 4, "made for 3 partitions"),
        ("w1.4.1~2~x~3", 4, "not a position"),
        ("hello", 4, "not a resume token"),
        ("w1.4.1~2~3~4.99999999999", 4, "not a position"),
        ("١٢", 4, "not a resume token"),  # non-ASCII digits are not a version
    ],
)
def test_bad_tokens_are_invalid_argument(raw: str, partitions: int, problem: str) -> None:
    with pytest.raises(errors.InvalidArgument, match=problem) as exc:
        cursor.parse_from(raw, partitions)
    assert exc.value.details["field"] == "from_version"


def test_version_start_is_inclusive_on_every_partition() -> None:
    assert cursor.parse_from("7", 2) == {0: Position(6), 1: Position(6)}
    assert cursor.parse_from("0", 1) == {0: Position(0)}
    assert cursor.parse_from(None, 3) is None
