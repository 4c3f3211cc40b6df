"""Quorum health: the pure judgement (a table), decide() reporting it, and the reconciler's
Event and metric when partitions lose and regain their quorum."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest
from kvoperator import decide as d
from kvoperator.decide.health import QuorumHealth, quorum_health
from kvoperator.model.observed import NodeReport
from kvoperator.model.status import Phase

from tests.unit.operator.builders import NAMES, cluster_map, observed, spec
from tests.unit.operator.harness import Harness

PMAP4 = cluster_map(range(4), partitions=8)  # RF 3 on 4 nodes: replica sets differ


def reports(up: list[int], *, leaders: dict[int, dict[int, str | None]] | None = None,
            ) -> tuple[NodeReport, ...]:  # fmt: skip
    """Nodes ``up`` answer; each tells the leaders in ``leaders[node]`` (default: the first
    replica of every partition it hosts, a live Raft group)."""
    out = []
    for o in up:
        told = (leaders or {}).get(o)
        if told is None:
            seq = tuple(r[0] for r in PMAP4.replicas)
        else:
            seq = tuple(told.get(p) for p in range(PMAP4.partitions))
        out.append(NodeReport(o, reachable=True, epoch=1, leaders=seq))
    return tuple(out)


def hosted_by_both(a: str, b: str) -> list[int]:
    return [p for p, r in enumerate(PMAP4.replicas) if a in r and b in r]


def without_leader(lost: int) -> dict[int, str | None]:
    return {p: r[0] for p, r in enumerate(PMAP4.replicas) if p != lost}


def stale_hint(bad: int) -> dict[int, str | None]:
    return {p: "demo-9" if p == bad else r[0] for p, r in enumerate(PMAP4.replicas)}


@dataclass(frozen=True)
class Row:
    name: str
    nodes: tuple[NodeReport, ...]
    lost: list[int]


ROWS = [
    Row("all up, leaders known", reports([0, 1, 2, 3]), []),
    Row("one node down: every partition keeps 2 of 3", reports([0, 1, 2]), []),
    Row(
        "two nodes down: exactly the partitions both hosted",
        reports([2, 3]),
        hosted_by_both("demo-0", "demo-1"),
    ),
    Row("every node down", (), list(range(8))),
    Row(
        "nodes answer but no replica knows a leader of partition 5",
        reports([0, 1, 2, 3], leaders=dict.fromkeys(range(4), without_leader(5))),
        [5],
    ),
    Row(
        "a leader named that is not a replica (a stale hint) does not count",
        reports([0, 1, 2, 3], leaders=dict.fromkeys(range(4), stale_hint(2))),
        [2],
    ),
    Row(
        "nodes that do not tell leaders: judged on answering replicas only",
        tuple(NodeReport(o, reachable=True, epoch=1) for o in range(4)),
        [],
    ),
    Row(
        "unreachable reports count as down",
        (*reports([2, 3]), NodeReport(0, reachable=False), NodeReport(1, reachable=False)),
        hosted_by_both("demo-0", "demo-1"),
    ),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_quorum_health(row: Row) -> None:
    assert list(quorum_health(PMAP4, row.nodes).lost) == row.lost


def test_two_down_on_four_nodes_leaves_some_partitions_serving() -> None:
    """The claim the e2e test relies on: with RF 3 on 4 nodes, losing two nodes costs some
    partitions their quorum and leaves the others with theirs."""
    lost = quorum_health(PMAP4, reports([2, 3])).lost
    assert 0 < len(lost) < PMAP4.partitions


def test_no_map_is_unknown() -> None:
    h = quorum_health(None, ())
    assert not h.known
    assert h.condition().status is False
    assert h.condition().reason == "NoMap"


def test_condition_names_the_partitions() -> None:
    c = QuorumHealth(lost=(1, 4)).condition()
    assert (c.type, c.status, c.reason) == ("QuorumLost", True, "QuorumLost")
    assert c.message.endswith(": 1, 4")
    many = QuorumHealth(lost=tuple(range(30))).condition()
    assert "(+10 more)" in many.message


def test_decide_reports_quorum_loss_instead_of_ready() -> None:
    obs = observed(sts=4, running=range(4), ready=range(4), pmap=PMAP4, bootstrapped=True)
    ok = d.decide(spec(replicas=4, partitions=8), obs, NAMES, objects_current=True)
    assert ok.phase is Phase.READY
    assert ok.quorum.condition().reason == "AllPartitionsHaveQuorum"
    down = [NodeReport(0, reachable=False), NodeReport(1, reachable=False), *reports([2, 3])]
    bad = d.decide(spec(replicas=4, partitions=8), dataclasses.replace(obs, nodes=tuple(down)),
                   NAMES, objects_current=True)  # fmt: skip
    assert bad.phase is Phase.DEGRADED
    assert bad.ready.status is False
    assert bad.degraded is not None
    assert bad.degraded.status is True
    assert bad.quorum.lost == tuple(hosted_by_both("demo-0", "demo-1"))
    (cond,) = [c for c in bad.status(NAMES, generation=1).conditions if c.type == "QuorumLost"]
    assert cond.status is True
    assert bad.actions == ()  # nothing disruptive: the partitions with a quorum keep serving


def test_decide_judges_nothing_before_bootstrap() -> None:
    obs = observed(sts=4, running=range(4), pmap=PMAP4, epochs={0: 1, 1: None})
    out = d.decide(spec(replicas=4, partitions=8), obs, NAMES, objects_current=True)
    assert out.quorum.known is False


def test_paused_still_reports_quorum_loss() -> None:
    obs = observed(sts=4, running=[2, 3], ready=[2, 3], pmap=PMAP4, bootstrapped=True)
    out = d.decide(spec(replicas=4, partitions=8, paused=True), obs, NAMES, objects_current=True)
    assert out.phase is Phase.PAUSED
    assert out.quorum.lost


async def test_reconciler_event_and_metric_on_loss_and_recovery() -> None:
    h = Harness({"replicas": 4, "partitions": 8})
    await h.ready()
    assert h.sample("ringkv_operator_partitions_quorum_lost") == 0
    h.nodes.deaf.update({"demo-0", "demo-1"})
    await h.step()
    conds = {c["type"]: c for c in h.status["conditions"]}
    assert conds["QuorumLost"]["status"] == "True"
    assert h.status["phase"] == "Degraded"
    lost = h.sample("ringkv_operator_partitions_quorum_lost")
    assert lost is not None
    assert lost > 0
    assert "QuorumLost" in h.kube.reasons()
    h.nodes.deaf.clear()
    await h.until("recovered", h.converged)
    conds = {c["type"]: c for c in h.status["conditions"]}
    assert conds["QuorumLost"]["status"] == "False"
    assert "QuorumRestored" in h.kube.reasons()
    assert h.sample("ringkv_operator_partitions_quorum_lost") == 0


def test_a_node_that_lost_its_volume_is_no_voter_of_what_it_lost() -> None:
    """Reachable is not enough: a member answering without a map, or naming a partition as
    needing a reseed, does not count towards that partition's quorum."""
    a, b = "demo-0", "demo-1"
    both = hosted_by_both(a, b)
    third = {p: next(int(r.rsplit("-", 1)[1]) for r in PMAP4.replicas[p] if r not in (a, b))
             for p in both}  # fmt: skip
    down = [o for o in range(4) if o not in (0, 1)]
    up = [NodeReport(0, reachable=False), *reports([1]), *reports(down)]
    assert quorum_health(PMAP4, tuple(up)).lost == ()
    emptied = tuple(dataclasses.replace(n, epoch=None) if n.ordinal == 1 else n for n in up)
    assert set(quorum_health(PMAP4, emptied).lost) >= set(both)
    p = both[0]
    marked = tuple(
        dataclasses.replace(n, needs_reseed=(p,)) if n.ordinal == third[p] else n for n in up
    )
    assert p in quorum_health(PMAP4, marked).lost
