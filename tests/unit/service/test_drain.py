"""Maintenance drain: the hand-away rule of a drained leader, no hand-off to a drained node, and
the persisted flag."""

from __future__ import annotations

from pathlib import Path

import pytest
from kvnode.service import drain
from kvnode.service.drain import drain_target
from kvnode.service.housekeeping import handoff_target

from tests.unit.service.fakes import addr
from tests.unit.service.test_housekeeping import one, status


def test_drained_leader_hands_to_the_first_undrained_connected_replica() -> None:
    pmap = one(["a", "b", "c"])
    st = status("a", ["a", "b", "c"])
    assert drain_target(pmap, "a", 0, st, frozenset()) == ("b", addr("b", 0))
    assert drain_target(pmap, "a", 0, st, frozenset({"b"})) == ("c", addr("c", 0))


def test_drained_leader_keeps_leading_when_no_one_else_can() -> None:
    pmap = one(["a", "b", "c"])
    assert drain_target(pmap, "a", 0, status("a", ["a", "b", "c"]), frozenset({"b", "c"})) is None
    assert (
        drain_target(pmap, "a", 0, status("a", ["a", "b", "c"], connected=[]), frozenset()) is None
    )


def test_drained_follower_or_lagging_map_does_nothing() -> None:
    pmap = one(["a", "b", "c"])
    assert (
        drain_target(pmap, "a", 0, status("a", ["a", "b", "c"], role="follower"), frozenset())
        is None
    )
    assert drain_target(pmap, "a", 0, status("a", ["a", "b", "c", "d"]), frozenset()) is None
    assert drain_target(pmap, "a", 0, None, frozenset()) is None


def test_no_handoff_to_a_drained_preferred_replica() -> None:
    pmap = one(["b", "a", "c"])
    st = status("a", ["a", "b", "c"])
    assert handoff_target(pmap, "a", 0, st) == ("b", addr("b", 0))
    assert handoff_target(pmap, "a", 0, st, frozenset({"b"})) is None


def test_flag_persists(tmp_path: Path) -> None:
    assert drain.load(str(tmp_path)) is False
    drain.save(str(tmp_path), True)
    assert drain.load(str(tmp_path)) is True
    drain.save(str(tmp_path), False)
    assert drain.load(str(tmp_path)) is False
    assert not list(tmp_path.glob("*.tmp"))


def test_corrupt_flag_is_an_error(tmp_path: Path) -> None:
    (tmp_path / drain.FILE).write_text("{")
    with pytest.raises(ValueError, match="Expecting"):
        drain.load(str(tmp_path))
