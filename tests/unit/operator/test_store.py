"""The rebalance executor's state in a ConfigMap: round trip, absent, unreadable."""

from __future__ import annotations

import pytest
from kvnode.core import plan as planning
from kvnode.rebalance.state import RebalanceState, Status
from kvoperator.kube.store import ConfigMapStore, load_configmap
from kvoperator.manifests import Owner

from tests.unit.operator.builders import NAMES, cluster_map
from tests.unit.operator.fakes import FakeKube


def state() -> RebalanceState:
    base = cluster_map(range(3), epoch=4, partitions=6)
    target = cluster_map(range(4), epoch=4, partitions=6, previous=base)
    plan = planning.plan_migration(base.replicas, target.replicas)
    return RebalanceState(Status.RUNNING, base, target, plan, started_at=1.0, bytes_moved=7)


def test_round_trip_through_an_owned_configmap() -> None:
    kube = FakeKube()
    store = ConfigMapStore(
        NAMES, Owner("demo", "u-1"), read=kube.get_configmap_sync, write=kube.apply_sync,
        clock=lambda: 123.5,
    )  # fmt: skip
    assert store.load() is None
    st = state()
    store.save(st)
    assert store.load() == st
    cm = kube.get("ConfigMap", "ns", "demo-rebalance")
    assert cm is not None
    assert cm["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    loaded = load_configmap(cm)
    assert loaded is not None
    assert loaded[1] == 123.5
    assert str(store) == "configmap ns/demo-rebalance"


def test_unreadable_state_names_the_configmap() -> None:
    cm = {"metadata": {"name": "demo-rebalance", "namespace": "ns"}, "data": {"state.json": "{"}}
    with pytest.raises(ValueError, match="configmap ns/demo-rebalance is unreadable"):
        load_configmap(cm)
    assert load_configmap({"metadata": {}, "data": {}}) is None
    assert load_configmap(None) is None
