"""Automatic reseed of replicas lost with a volume (``decide/replacement.py``), through decide()."""

from __future__ import annotations

import dataclasses

from kvoperator import decide as d
from kvoperator.decide import replacement
from kvoperator.decide.health import QuorumHealth
from kvoperator.model.observed import Observed
from kvoperator.model.status import Phase

from tests.unit.operator.builders import NAMES, NOW, cluster_map, observed, rebalance, spec
from tests.unit.operator.harness import Harness

M3 = cluster_map(range(3), epoch=7)
M5 = cluster_map(range(5), epoch=7)


def lost(obs: Observed, ordinal: int, partitions: list[int]) -> Observed:
    """``ordinal`` answers with its map and names ``partitions`` as needing a reseed."""
    nodes = tuple(
        dataclasses.replace(n, needs_reseed=tuple(partitions)) if n.ordinal == ordinal else n
        for n in obs.nodes
    )
    return dataclasses.replace(obs, nodes=nodes)


def test_only_the_partitions_a_node_names_are_reseeded_under_the_cap() -> None:
    mine = M5.partitions_of("demo-3")
    obs = lost(observed(sts=5, running=range(5), ready=[0, 1, 2, 4], pmap=M5), 3, list(mine[:2]))
    out = d.decide(spec(replicas=5, replacement={"maxConcurrent": 1}), obs, NAMES,
                   objects_current=True)  # fmt: skip
    (action,) = out.actions
    assert isinstance(action, d.ReplaceReplicas)
    assert action.replacements == tuple((p, "demo-3", "demo-3") for p in mine[:2])
    assert action.max_concurrent == 1
    assert action.current == M5
    assert out.degraded is not None
    assert out.degraded.reason == "ReplacingReplicas"
    assert out.ready.status is False


def test_a_partition_named_but_no_longer_the_nodes_is_ignored() -> None:
    other = next(p for p in range(M5.partitions) if "demo-3" not in M5.replicas[p])
    obs = lost(observed(sts=5, running=range(5), ready=[0, 1, 2, 4], pmap=M5), 3, [other])
    assert replacement.lost_replicas(obs, M5) == {}


def test_a_partition_without_quorum_is_never_reseeded() -> None:
    obs = observed(sts=5, running=range(5), ready=range(5), pmap=M5, epochs={3: None},
                   bootstrapped=True)  # fmt: skip
    lost_here = replacement.lost_replicas(obs, M5)
    mine = M5.partitions_of("demo-3")
    assert lost_here == {"demo-3": mine}
    verdict = replacement.judge(obs, M5, lost_here, QuorumHealth(lost=(mine[0],)))
    assert [p for p, _, _ in verdict.start] == list(mine[1:])
    assert len(verdict.blocked) == 1
    assert verdict.blocked[0].startswith(f"partition {mine[0]} on demo-3")


def test_after_an_aborted_replacement_it_waits_before_trying_again() -> None:
    rb = rebalance(M3, M3, status="aborted", updated_at=NOW - 10, failure="step failed: x")
    obs = observed(sts=3, running=range(3), ready=[0, 1], pmap=M3, epochs={2: None},
                   rebalance=rb, bootstrapped=True)  # fmt: skip
    out = d.decide(spec(), obs, NAMES, objects_current=True)
    assert out.actions == ()
    assert out.phase is Phase.DEGRADED
    assert "the last replacement was aborted (step failed: x)" in out.message
    later = dataclasses.replace(obs, now=NOW + 120)
    (action,) = d.decide(spec(), later, NAMES, objects_current=True).actions
    assert isinstance(action, d.ReplaceReplicas)


def test_a_running_replacement_is_reported_as_such() -> None:
    rb = dataclasses.replace(rebalance(M3, M3, active=True), replacement=True)
    obs = observed(sts=3, running=range(3), ready=[0, 1], pmap=M3, rebalance=rb,
                   bootstrapped=True)  # fmt: skip
    out = d.decide(spec(), obs, NAMES, objects_current=True)
    assert out.actions == ()
    assert out.phase is Phase.REBALANCING
    assert out.ready.reason == "ReplacingReplicas"
    assert "replica replacement: 3/10 partitions" in out.message


def test_paused_reseeds_nothing() -> None:
    obs = observed(sts=3, running=range(3), ready=[0, 1], pmap=M3, epochs={2: None},
                   bootstrapped=True)  # fmt: skip
    out = d.decide(spec(paused=True), obs, NAMES, objects_current=True)
    assert out.actions == ()
    assert out.phase is Phase.PAUSED


def test_a_replacement_resumes_under_its_own_cap_a_rebalance_under_the_operators() -> None:
    rb = dataclasses.replace(rebalance(M3, M3), replacement=True)
    obs = observed(sts=3, running=range(3), ready=[0, 1], pmap=M3, rebalance=rb,
                   bootstrapped=True)  # fmt: skip
    s = spec(replacement={"maxConcurrent": 3})
    assert d.decide(s, obs, NAMES, objects_current=True).actions == (d.ResumeRebalance(3),)
    plain = observed(sts=5, running=range(5), ready=range(5), pmap=M3,
                     rebalance=rebalance(M3, M5), bootstrapped=True)  # fmt: skip
    assert d.decide(s, plain, NAMES, objects_current=True).actions == (d.ResumeRebalance(None),)


async def test_an_emptied_volume_is_reseeded_through_the_reconciler() -> None:
    """The whole path against the fakes: a member whose volume was emptied (no map, no data,
    still a voter in its groups) is reseeded partition by partition, and the cluster is Ready
    again with every replica holding the data."""
    h = Harness({"replicas": 3, "partitions": 6, "replacement": {"maxConcurrent": 2}})
    await h.ready()
    cluster = h.nodes.cluster
    assert cluster is not None
    wiped = cluster.nodes["demo-1"]
    wiped.data.clear()
    wiped.applied.clear()
    wiped.maps.clear()
    h.nodes.bootstrap.pop("demo-1", None)
    for g in cluster.groups.values():
        if g.leader == "demo-1":  # it lost its leaderships when it went away
            g.leader = next(v for v in g.voters if v != "demo-1")
    await h.step()
    assert h.status["phase"] == "Rebalancing"
    assert "ReplicaReplacementStarted" in h.kube.reasons()
    await h.until("reseeded and Ready", lambda: h.converged() and len(wiped.data) == 6)
    for p in range(6):
        assert [op for op in cluster.ops[p] if op[1] == "demo-1" and op[0] != "lead"] == [
            ("remove", "demo-1"),
            ("seed", "demo-1"),
            ("add", "demo-1"),
        ]
        assert wiped.data[p] == cluster.nodes["demo-0"].data[p]
    assert "RebalanceDone" in h.kube.reasons()
    assert h.errors() == 0
