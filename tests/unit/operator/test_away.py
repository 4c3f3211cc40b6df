"""A member away longer than ``spec.replacement.after``: its replicas re-placed on the others
when capacity and quorum allow, and moved back when it returns (``decide/away.py``)."""

from __future__ import annotations

import dataclasses
from collections import Counter

from kvoperator import decide as d
from kvoperator.model.observed import Observed, PodView
from kvoperator.model.spec import ClusterSpec
from kvoperator.model.status import Phase

from tests.unit.operator.builders import NAMES, NOW, cluster_map, observed, spec

M4 = cluster_map(range(4), epoch=5, partitions=8)
M3 = cluster_map(range(3), epoch=5, partitions=8)
SPEC4 = spec(replicas=4, partitions=8, replacement={"after": "20s", "maxConcurrent": 3})


def with_away(obs: Observed, ordinal: int, *, since: float) -> Observed:
    """``ordinal``'s pod exists but cannot run (e.g. unschedulable) since ``since``."""
    pod = PodView(ordinal, NAMES.pod(ordinal), running=False, ready=False, unready_since=since)
    pods = tuple(sorted((*obs.pods, pod), key=lambda p: p.ordinal))
    return dataclasses.replace(obs, pods=pods)


def decide(o: Observed, s: ClusterSpec = SPEC4) -> d.Decision:
    return d.decide(s, o, NAMES, objects_current=True)


def test_a_short_absence_changes_nothing() -> None:
    o = with_away(observed(sts=4, running=[0, 1, 2], ready=[0, 1, 2], pmap=M4), 3, since=NOW - 5)
    out = decide(o)
    assert out.actions == ()
    assert "nodes not ready: demo-3" in out.message


def test_its_replicas_are_re_placed_evenly_after_the_delay() -> None:
    o = with_away(observed(sts=4, running=[0, 1, 2], ready=[0, 1, 2], pmap=M4), 3, since=NOW - 30)
    out = decide(o)
    (action,) = out.actions
    assert isinstance(action, d.ReplaceReplicas)
    assert action.away == ("demo-3",)
    assert action.max_concurrent == 3
    mine = M4.partitions_of("demo-3")
    assert [p for p, _, _ in action.replacements] == list(mine)
    for p, old, new in action.replacements:
        assert old == "demo-3"
        assert new not in M4.replicas[p]
    after = Counter(r for reps in M4.replicas for r in reps if r != "demo-3")
    after.update(new for _, _, new in action.replacements)
    assert max(after.values()) - min(after.values()) <= 1  # 24 replicas on 3 nodes
    assert out.phase is Phase.REBALANCING
    assert out.ready.reason == "ReplacingAwayNode"


def test_capacity_insufficient_is_reported_and_nothing_is_done() -> None:
    o = with_away(observed(sts=3, running=[0, 1], ready=[0, 1], pmap=M3), 2, since=NOW - 300)
    out = decide(o, spec(replicas=3, partitions=8, replacement={"after": "20s"}))
    assert out.actions == ()
    assert out.phase is Phase.DEGRADED
    assert out.degraded is not None
    assert out.degraded.reason == "NodeAway"
    assert "2 ready nodes for a replication factor of 3" in out.message


def test_never_below_quorum_another_member_not_ready_blocks_it() -> None:
    o = with_away(observed(sts=4, running=[0, 1, 2], ready=[0, 1], pmap=M4), 3, since=NOW - 30)
    out = decide(o)
    assert out.actions == ()
    assert out.degraded is not None
    assert out.degraded.reason == "NodeAway"


def test_a_node_that_answers_is_not_away() -> None:
    base = observed(sts=4, running=range(4), ready=[0, 1, 2], pmap=M4)
    pods = tuple(dataclasses.replace(p, unready_since=NOW - 300) if p.ordinal == 3 else p
                 for p in base.pods)  # fmt: skip
    out = decide(dataclasses.replace(base, pods=pods))
    assert not any(isinstance(a, d.ReplaceReplicas) for a in out.actions)


def test_paused_re_places_nothing() -> None:
    o = with_away(observed(sts=4, running=[0, 1, 2], ready=[0, 1, 2], pmap=M4), 3, since=NOW - 30)
    out = decide(o, spec(replicas=4, partitions=8, paused=True, replacement={"after": "20s"}))
    assert out.actions == ()


def test_when_it_returns_its_stale_copies_go_then_replicas_move_back() -> None:
    without = cluster_map(range(3), epoch=30, partitions=8)  # the map after the re-placement
    base = observed(sts=4, running=range(4), ready=[0, 1, 2], pmap=without, epochs={3: 5})
    nodes = tuple(dataclasses.replace(n, hosted=(0, 2, 5)) if n.ordinal == 3 else n
                  for n in base.nodes)  # fmt: skip
    out = decide(dataclasses.replace(base, nodes=nodes))
    assert out.actions == (d.DropStale(3, (0, 2, 5), without),)
    assert "dropping them before it rejoins" in out.message
    clean = tuple(dataclasses.replace(n, hosted=()) if n.ordinal == 3 else n for n in base.nodes)
    (start,) = decide(dataclasses.replace(base, nodes=clean)).actions
    assert isinstance(start, d.StartRebalance)
    assert start.target.partitions_of("demo-3")  # the full node set's placement gives it some
    assert start.current == without
