"""``Routing``: only newer knowledge replaces older; choices follow the map and hints."""

from __future__ import annotations

import random

import pytest
from kvnode.client.routing import BACKOFF_CAP_S, Routing, attempt_budget
from kvnode.core.model import NodeInfo, PartitionMap


def pmap(epoch: int, replicas: list[list[str]]) -> PartitionMap:
    nodes = [NodeInfo(f"n{i}", f"h{i}", 7000, 9000) for i in range(4)]
    return PartitionMap.build(epoch=epoch, nodes=nodes, replicas=replicas, replication=2)


MAP1 = pmap(1, [["n0", "n1"], ["n1", "n2"]])
MAP2 = pmap(2, [["n2", "n3"], ["n1", "n2"]])


def test_needs_an_endpoint() -> None:
    with pytest.raises(ValueError, match="endpoint"):
        Routing([])


def test_adopts_cluster_then_prefers_the_leader_hint() -> None:
    r = Routing(["http://seed:7000/"])
    assert r.adopt_cluster({"map": MAP1.to_dict(), "leaders": {"0": "n1", "1": None, "x": "n0"}})
    assert r.leader(0).node_id == "n1"
    assert r.leader(1).node_id == "n1"  # no hint: the preferred leader
    assert r.leader(0, avoid="http://h1:7000").node_id == "n0"


def test_older_or_malformed_maps_are_ignored() -> None:
    r = Routing(["http://seed:7000"])
    assert r.adopt_map(MAP2.to_dict())
    assert not r.adopt_map(MAP1.to_dict())
    assert not r.adopt_map({"epoch": 3})
    assert not r.adopt_cluster({"map": None})
    assert r.pmap == MAP2


def test_newer_map_keeps_only_hints_that_are_still_replicas() -> None:
    r = Routing(["http://seed:7000"])
    r.adopt_cluster({"map": MAP1.to_dict(), "leaders": {"0": "n1", "1": "n2"}})
    r.adopt_map(MAP2.to_dict())
    assert r.leaders == {1: "n2"}
    assert r.leader(0).node_id == "n2"


def test_hints_for_unknown_nodes_are_refused() -> None:
    r = Routing(["http://seed:7000"])
    assert not r.note_leader(0, "n1")  # no map yet
    r.adopt_map(MAP1.to_dict())
    assert not r.note_leader(0, "n9")
    assert not r.note_leader(5, "n1")
    assert r.note_leader(0, "n0")


def test_round_robin_and_refresh_candidates() -> None:
    r = Routing(["http://a", "http://b"])
    assert [r.any_node() for _ in range(3)] == ["http://a", "http://b", "http://a"]
    r.adopt_map(MAP1.to_dict())
    cands = r.refresh_candidates()
    assert cands[:2] == ["http://a", "http://b"]
    assert "http://h3:7000" in cands
    assert r.refresh_candidates()[0] == "http://b"


def test_backoff_is_jittered_exponential_capped_and_honours_retry_after() -> None:
    r = Routing(["http://a"], rng=random.Random(1))
    delays = [r.backoff(a) for a in range(10)]
    assert 0.025 <= delays[0] <= 0.05
    assert all(d <= BACKOFF_CAP_S for d in delays)
    assert delays[9] >= BACKOFF_CAP_S / 2
    assert r.backoff(0, retry_after=2.0) == 2.0


def test_attempt_budget_is_capped_but_never_beyond_the_deadline() -> None:
    assert attempt_budget(6.0, 2.0) == 2.0  # a long deadline: several attempts fit
    assert attempt_budget(1.5, 2.0) == 1.5  # the last attempt gets what is left
    assert attempt_budget(-0.1, 2.0) == 0.0


def test_suspected_nodes_are_avoided_until_vouched_or_expired() -> None:
    r = Routing(["http://h0:7000", "http://h1:7000"], rng=random.Random(1))
    r.adopt_cluster({"map": MAP1.to_dict(), "leaders": {"0": "n1"}})
    r.suspect("http://h1:7000/", now=100.0, for_s=3.0)
    assert r.leader(0, now=101.0).node_id == "n0"  # the hint names a suspect
    assert {r.replica(0, now=101.0).node_id for _ in range(20)} == {"n0"}
    assert [r.any_node(now=101.0) for _ in range(3)] == ["http://h0:7000"] * 3
    assert r.refresh_candidates(now=101.0)[-1] == "http://h1:7000"
    assert r.leader(0, now=103.5).node_id == "n1"  # expired
    r.suspect("http://h1:7000", now=200.0)
    r.vouch("http://h1:7000")
    assert r.leader(0, now=200.5).node_id == "n1"


def test_suspicion_is_a_preference_not_a_ban() -> None:
    r = Routing(["http://h0:7000"])
    r.adopt_map(MAP1.to_dict())
    r.suspect("http://h0:7000", now=0.0)
    r.suspect("http://h1:7000", now=0.0)
    assert r.leader(0, now=1.0).node_id == "n0"  # every replica suspected: still try one
    assert r.leader(0, avoid="http://h0:7000", now=1.0).node_id == "n1"
    assert r.any_node(now=1.0) == "http://h0:7000"
