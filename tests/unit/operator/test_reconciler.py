"""The reconcile loop (observe -> decide -> act -> report) against fake Kubernetes and nodes,
with the real rebalance executor: bootstrap, scale up and down with live migration, a restarted
operator resuming a plan, a scale request during a rebalance, bad specs, pause."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.unit.operator.builders import NAMES
from tests.unit.operator.harness import Harness

pytestmark = pytest.mark.timeout(60)


def balanced(h: Harness, n: int) -> None:
    """Every partition has 3 voters, each node holds its share (±1), and only members hold
    data (drained nodes were emptied)."""
    cluster = h.nodes.cluster
    assert cluster is not None
    members = cluster.members()
    assert all(len(m) == 3 for m in members)
    load = {NAMES.pod(o): sum(NAMES.pod(o) in m for m in members) for o in range(n)}
    assert set().union(*members) == set(load)
    assert max(load.values()) - min(load.values()) <= 1, load
    for p, m in enumerate(members):
        assert cluster.holders(p) == m


async def test_bootstrap_to_ready() -> None:
    h = Harness({"replicas": 3, "partitions": 8})
    await h.ready()
    s = h.status
    assert (s["replicas"], s["readyReplicas"], s["epoch"]) == (3, 3, 1)
    assert s["observedGeneration"] == 1
    assert s["selector"] == NAMES.selector
    conds = {c["type"]: c for c in s["conditions"]}
    assert conds["Ready"]["status"] == "True"
    assert conds["Progressing"]["status"] == "False"
    assert conds["Degraded"]["status"] == "False"
    assert all(c["observedGeneration"] == 1 for c in conds.values())
    assert h.kube.names("StatefulSet") == ["demo"]
    assert h.kube.names("Service") == ["demo", "demo-peers"]
    assert h.kube.names("PodDisruptionBudget") == ["demo"]
    sts = h.kube.get("StatefulSet", "ns", "demo")
    assert sts is not None
    assert sts["spec"]["replicas"] == 3
    assert sts["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    reasons = h.kube.reasons()
    assert reasons.index("Created") < reasons.index("MapInstalled") < reasons.index("PhaseReady")
    assert h.errors() == 0
    assert h.sample("ringkv_operator_cluster_map_epoch") == 1


async def test_steady_state_writes_nothing() -> None:
    h = Harness({"replicas": 3, "partitions": 4})
    await h.ready()
    patches, installs, events = len(h.kube.statuses), h.nodes.installs, len(h.kube.events)
    for _ in range(5):
        await h.step()
    assert (len(h.kube.statuses), h.nodes.installs, len(h.kube.events)) == (
        patches, installs, events,
    )  # fmt: skip


async def test_scale_up_rebalances_with_progress() -> None:
    h = Harness({"replicas": 3, "partitions": 12})
    await h.ready()
    h.kube.update_spec(replicas=5)
    await h.until("rebalancing", lambda: h.status.get("phase") == "Rebalancing")
    await h.ready()
    s = h.status
    assert s["replicas"] == 5
    assert s["readyReplicas"] == 5
    assert s["epoch"] > 1
    assert s["observedGeneration"] == 2
    assert "rebalance" not in s
    assert "progress" not in s
    balanced(h, 5)
    seen = [x["rebalance"] for x in h.kube.statuses if x.get("rebalance")]
    assert seen
    assert seen[-1]["toReplicas"] == 5
    assert seen[-1]["partitionsTotal"] > 0
    assert any(x.get("progress") for x in h.kube.statuses)
    assert "RebalanceStarted" in h.kube.reasons()
    assert "RebalanceDone" in h.kube.reasons()
    state = json.loads(h.kube.get("ConfigMap", "ns", "demo-rebalance")["data"]["state.json"])
    assert state["status"] == "done"
    assert h.sample("ringkv_operator_rebalances_total", outcome="done") == 1
    assert h.errors() == 0


@pytest.mark.parametrize("policy", ["delete", "retain"])
async def test_scale_down_drains_before_pods_go(policy: str) -> None:
    h = Harness({"replicas": 5, "partitions": 10, "storage": {"reclaimPolicy": policy}})
    await h.ready()
    held: dict[str, Any] = {}

    def on_delete(pod: str) -> None:  # the pod's data must already be elsewhere
        cluster = h.nodes.cluster
        assert cluster is not None
        held[pod] = dict(cluster.nodes[pod].data)
        assert all(pod not in m for m in cluster.members())

    h.kube.on_pod_deleted = on_delete
    h.kube.update_spec(replicas=3)
    await h.ready()
    assert sorted(held) == ["demo-3", "demo-4"]
    assert held == {"demo-3": {}, "demo-4": {}}
    balanced(h, 3)
    sts = h.kube.get("StatefulSet", "ns", "demo")
    assert sts is not None
    assert sts["spec"]["replicas"] == 3
    pvcs = h.kube.names("PersistentVolumeClaim")
    if policy == "delete":
        assert pvcs == ["data-demo-0", "data-demo-1", "data-demo-2"]
    else:
        assert pvcs == [f"data-demo-{i}" for i in range(5)]
        for i in (3, 4):
            pvc = h.kube.get("PersistentVolumeClaim", "ns", f"data-demo-{i}")
            assert pvc is not None
            assert "ringkv.io/retired-at-epoch" in pvc["metadata"]["annotations"]
    assert "VolumesReclaimed" in h.kube.reasons()
    assert h.errors() == 0


async def test_retained_volume_blocks_a_later_scale_up() -> None:
    h = Harness({"replicas": 4, "partitions": 6})
    await h.ready()
    h.kube.update_spec(replicas=3)
    await h.ready()
    h.kube.update_spec(replicas=4)
    await h.until("degraded", lambda: h.status.get("phase") == "Degraded")
    assert "data-demo-3 hold data retained" in h.status["message"]
    sts = h.kube.get("StatefulSet", "ns", "demo")
    assert sts is not None
    assert sts["spec"]["replicas"] == 3
    await h.kube.delete_pvc("ns", "data-demo-3")  # the user's decision
    await h.ready()
    assert h.status["replicas"] == 4
    balanced(h, 4)


async def test_restarted_operator_resumes_the_persisted_plan() -> None:
    h = Harness({"replicas": 3, "partitions": 12})
    await h.ready()
    h.kube.update_spec(replicas=5)
    cluster = h.nodes.cluster
    assert cluster is not None
    gate = cluster.hold("add", 0)  # partition 0's membership change waits: the plan is mid-way

    def steps_done() -> int:
        cm = h.kube.get("ConfigMap", "ns", "demo-rebalance")
        if cm is None:
            return 0
        return len(json.loads(cm["data"]["state.json"])["progress"]["done"])

    await h.until("some steps done", lambda: steps_done() >= 3)
    await h.rec.close()  # the operator pod is deleted: its task is cancelled
    h.rec = h.new_reconciler()  # a new operator process: nothing in memory
    gate.set()
    await h.until("resumed", lambda: "RebalanceResumed" in h.kube.reasons())
    assert "RebalanceStarted" in h.kube.reasons()
    await h.ready()
    assert h.kube.reasons().count("RebalanceStarted") == 1  # resumed, not re-planned
    balanced(h, 5)
    assert cluster.refused_maps == 0


async def test_scale_request_during_a_rebalance_waits_for_it() -> None:
    h = Harness({"replicas": 3, "partitions": 12})
    await h.ready()
    h.kube.update_spec(replicas=4)
    cluster = h.nodes.cluster
    assert cluster is not None
    gate = cluster.hold("add", 1)
    await h.until("rebalancing", lambda: h.status.get("phase") == "Rebalancing")
    h.kube.update_spec(replicas=5)
    await h.until("waiting", lambda: "waits for this rebalance" in h.status.get("message", ""))
    sts = h.kube.get("StatefulSet", "ns", "demo")
    assert sts is not None
    assert sts["spec"]["replicas"] == 4
    gate.set()
    await h.ready()
    assert h.status["replicas"] == 5
    assert h.kube.reasons().count("RebalanceStarted") == 2  # 3 -> 4, then 4 -> 5
    balanced(h, 5)


async def test_invalid_spec_is_reported_and_nothing_is_created() -> None:
    h = Harness({"replicas": 2, "replicationFactor": 3})
    await h.step()
    s = h.status
    assert s["phase"] == "Degraded"
    assert "spec.replicas: 2 is below spec.replicationFactor 3" in s["message"]
    degraded = next(c for c in s["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == "InvalidSpec"
    assert degraded["status"] == "True"
    assert h.kube.names("StatefulSet") == []
    assert ("Warning", "InvalidSpec") in {(t, r) for t, r, _ in h.kube.events}


async def test_paused_cluster_is_left_alone() -> None:
    h = Harness({"replicas": 3, "paused": True})
    for _ in range(3):
        await h.step()
    assert h.status["phase"] == "Paused"
    assert h.kube.names("StatefulSet") == []
    h.kube.update_spec(paused=False)
    await h.ready()


async def test_deleted_cluster_ends_the_pass_quietly() -> None:
    h = Harness({"replicas": 3})
    del h.kube.objects[("KVCluster", "ns", "demo")]
    assert await h.rec.reconcile_once() is False
    assert h.kube.objects == {}


async def test_zones_of_kubernetes_nodes_reach_the_map() -> None:
    h = Harness({"replicas": 3, "partitions": 6})
    h.kube.node_zones = {"worker-0": "a", "worker-1": "b", "worker-2": "c"}
    await h.ready()
    cluster = h.nodes.cluster
    assert cluster is not None
    pmap = cluster.installed("demo-0")
    assert {n.node_id: n.zone for n in pmap.nodes} == {"demo-0": "a", "demo-1": "b", "demo-2": "c"}


async def test_loop_runs_until_stopped_and_wakes_on_nudge() -> None:
    h = Harness({"replicas": 3, "partitions": 4})
    stop = asyncio.Event()

    async def controllers() -> None:
        while not stop.is_set():
            h.kube.run_controllers(ready=h.nodes.ready)
            await asyncio.sleep(0.01)

    ctl = asyncio.create_task(controllers())
    loop = asyncio.create_task(h.rec.run(stop.is_set))
    try:
        for _ in range(2000):  # bounded: 20 s
            if h.status.get("phase") == "Ready":
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError(f"never Ready: {h.status}")
    finally:
        stop.set()
        h.rec.nudge()
        await asyncio.wait_for(loop, 5)
        await ctl
    assert h.errors() == 0


async def test_a_cluster_being_deleted_is_not_reconciled() -> None:
    h = Harness({"replicas": 3})
    h.kube.cluster()["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    await h.step()
    assert h.kube.names("StatefulSet") == []
    assert "status" not in h.kube.cluster()


async def test_nudges_do_not_run_passes_faster_than_the_busy_interval() -> None:
    """Our own status patches come back as watch events: they must not spin the loop."""
    import dataclasses

    from kvoperator.reconcile.reconciler import Reconciler

    from tests.unit.operator.harness import SETTINGS

    h = Harness({"replicas": 3, "paused": True})
    settings = dataclasses.replace(SETTINGS, busy_interval_s=0.1, reconcile_interval_s=0.1)
    rec = Reconciler(
        kube=h.kube, nodes=h.nodes, settings=settings, metrics=h.metrics,
        namespace="ns", name="demo",
    )  # fmt: skip
    stop = asyncio.Event()
    clock = asyncio.get_running_loop()
    started = clock.time()
    loop = asyncio.create_task(rec.run(stop.is_set))
    nudges = 100
    for _ in range(nudges):  # about 1 s of nudges every 10 ms (longer on a busy machine)
        rec.nudge()
        await asyncio.sleep(0.01)
    stop.set()
    rec.nudge()
    await asyncio.wait_for(loop, 5)
    elapsed = clock.time() - started
    passes = h.sample("ringkv_operator_reconciles_total", result="ok") or 0
    # At most one pass per busy interval of the time that really passed (a starved event loop
    # stretches the nudging second), plus the first and the last; far fewer than the nudges.
    assert 2 <= passes <= elapsed / 0.1 + 2, (passes, elapsed)
    assert passes < nudges / 4, (passes, elapsed)


async def test_unreadable_rebalance_state_blocks_planning() -> None:
    h = Harness({"replicas": 3, "partitions": 4})
    await h.ready()
    cm = {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "demo-rebalance", "namespace": "ns"},
        "data": {"state.json": "{not json"},
    }  # fmt: skip
    h.kube.apply_sync(cm)
    h.kube.update_spec(replicas=4)
    await h.step()
    await h.step()
    s = h.status
    assert s["phase"] == "Degraded"
    assert "configmap ns/demo-rebalance is unreadable" in s["message"]
    sts = h.kube.get("StatefulSet", "ns", "demo")
    assert sts is not None
    assert sts["spec"]["replicas"] == 3
    assert "RebalanceStarted" not in h.kube.reasons()


async def test_a_bootstrap_install_that_missed_a_node_is_finished() -> None:
    h = Harness({"replicas": 3, "partitions": 4})
    h.nodes.deaf.add("demo-2")  # its pod runs, its HTTP server is not up yet
    await h.until("map on two nodes", lambda: h.nodes.map_of("demo-0") is not None)
    await h.step()
    assert h.status["phase"] == "Bootstrapping"
    assert not h.status.get("bootstrapped")
    assert h.errors() >= 1  # the failed install is counted, the status still written
    h.nodes.deaf.clear()
    await h.ready()
    assert h.status["bootstrapped"] is True
    assert h.nodes.map_of("demo-2") == h.nodes.map_of("demo-0")
