"""Issue 9, "must be shown": the operator installed by `helm install` runs a KVCluster through
its whole life on the real API server, driven by the real kubectl, with a client that keeps
writing and strong-reading through the client Service the whole time.

One scenario, in order (each step needs the state the previous one left):
1. apply a 3-node KVCluster -> Ready (timed); fill 10 000 keys through the client Service;
2. `kubectl scale --replicas=5` under load -> Rebalancing (progress printed by `kubectl get
   kvc`) -> Ready; epoch bumped; replicas and leaders balanced; no error, no lost write;
3. scale back to 3 under load -> the leaving nodes are drained before their pods go; the
   default reclaim policy (retain) keeps and marks their volumes;
4. `kubectl scale --replicas=2` and a changed `partitions` are refused by the API server;
5. the operator pod is deleted mid-rebalance (3 -> 4, reclaimPolicy now delete) -> the new
   one resumes the persisted plan; back to 3, the drained node's PVC is deleted;
6. deleting the KVCluster removes everything it owned (PVCs per policy: delete).
The numbers the issue asks for are printed (`-s`) and logged.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest
from kvharness import procs
from kvharness.cluster import LocalCluster
from opsupport import DrainWatch, Kvc, LoadProcess, newest_view, node_pods, percentile

pytestmark = pytest.mark.e2e
log = logging.getLogger(__name__)

KEYS = 10_000
KVCLUSTER = {
    "apiVersion": "ringkv.io/v1alpha1",
    "kind": "KVCluster",
    "metadata": {"name": "demo"},
    "spec": {"replicas": 3, "partitions": 16, "replicationFactor": 3},
}  # fmt: skip


def report(numbers: dict[str, Any], key: str, value: Any) -> None:
    numbers[key] = value
    print(f"[operator e2e] {key}: {value}")
    log.warning("[operator e2e] %s: %s", key, value)


def expected_values(acked: dict[str, str], uncertain: dict[str, list[str]]) -> dict[str, Any]:
    """Every key's allowed values: its last acknowledged value (the fill's if never overwritten),
    plus the values of writes whose outcome the client could not know."""
    expected = {f"k{i:05d}": [acked.get(f"k{i:05d}", f"k{i:05d}@fill")] for i in range(KEYS)}
    for key, values in uncertain.items():
        expected[key] = [*expected[key], *values]
    return expected


def judge_load(result: dict[str, Any], numbers: dict[str, Any], phase: str,
               windows: dict[str, tuple[float, float]]) -> None:  # fmt: skip
    """Zero client errors (after the client's own retries), zero stale strong reads; p99."""
    assert result["errors"] == [], f"client errors during {phase}: {result['errors'][:10]}"
    assert result["stale_reads"] == [], f"stale strong reads: {result['stale_reads'][:10]}"
    samples = result["samples"]
    report(numbers, f"{phase} ops", len(samples))
    for name, (lo, hi) in windows.items():
        lat = [s[1] for s in samples if lo <= s[0] < hi]
        assert lat, f"no client operations in the {name} window"
        report(numbers, f"client p99 {name} (ms, {len(lat)} ops)",
               round(percentile(lat, 0.99) * 1000, 1))  # fmt: skip


def balanced(view: dict[str, Any], nodes: int) -> bool:
    counts = view["nodes"]
    if len(counts) != nodes:
        return False
    reps = [n["replicas"] for n in counts.values()]
    leads = [n["leader_of"] for n in counts.values()]
    return max(reps) - min(reps) <= 1 and max(leads) - min(leads) <= 1 and sum(leads) == 16


def wait_balanced(kvc: Kvc, nodes: int) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        ips = [p["status"]["podIP"] for p in node_pods(kvc.cluster, kvc.ns)]
        view = newest_view(ips)
        return view if view is not None and balanced(view, nodes) else None

    what = f"{nodes} nodes balanced"
    view: dict[str, Any] = procs.wait_until(
        probe, timeout=90, interval=1, what=what, on_timeout=kvc.dump
    )
    return view


@pytest.mark.timeout(1500)
def test_kvcluster_lifecycle_under_load(
    scenario: tuple[Kvc, LoadProcess], cluster: LocalCluster, operator: str, namespace: str
) -> None:
    kvc, load = scenario
    numbers: dict[str, Any] = {}

    # 1. apply -> Ready; 10 000 keys through the client Service.
    kvc.kubectl("apply", "-f", "-", stdin=json.dumps(KVCLUSTER))
    report(numbers, "apply -> Ready (s)", round(kvc.wait_ready(3, timeout=180), 1))
    epoch3 = kvc.get()["status"]["epoch"]
    filled = load.fill(KEYS)
    report(numbers, f"fill {KEYS} keys through the Service (s)", round(filled["seconds"], 1))

    # 4. (on the live 3-node cluster) impossible specs are refused by the API server.
    before = kvc.get()
    refused = kvc.kubectl("scale", "kvc/demo", "--replicas=2", check=False)
    assert refused.returncode != 0
    assert "replicas must be at least replicationFactor" in refused.stderr, refused.stderr
    refused = kvc.kubectl("patch", "kvc", "demo", "--type=merge",
                          "-p", '{"spec":{"partitions":32}}', check=False)  # fmt: skip
    assert refused.returncode != 0
    assert "partitions is immutable" in refused.stderr, refused.stderr
    after = kvc.get()
    assert after["spec"] == before["spec"]
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert cluster.kubectl_json("-n", namespace, "get", "sts", "demo")["spec"]["replicas"] == 3

    # 2. scale 3 -> 5 under load.
    load.start(KEYS)
    procs.wait_until(lambda: _ops_seen(load), timeout=30, what="load running")
    t_before = _now()
    _settle(10)  # a window of load at rest, for the "before" p99
    t_scale = _now()
    kvc.kubectl("scale", "kvc/demo", "--replicas=5")
    report(numbers, f"scale 3 -> 5 with {KEYS} keys (s)",
           round(kvc.wait_ready(5, timeout=600, watch_rows=True), 1))  # fmt: skip
    t_scaled = _now()
    assert kvc.rows, "never saw the Rebalancing phase in `kubectl get kvc`"
    report(numbers, "kubectl get kvc mid-rebalance", kvc.rows[len(kvc.rows) // 2])
    status = kvc.get()["status"]
    assert status["epoch"] > epoch3
    view = wait_balanced(kvc, 5)
    spread = {n: (v["replicas"], v["leader_of"]) for n, v in sorted(view["nodes"].items())}
    report(numbers, "5-node balance (replicas, leaders)", spread)

    # 3. scale 5 -> 3 under the same load; drained before deleted; retain keeps the PVCs.
    watch = DrainWatch(cluster, namespace)
    watch.start()
    t_down = _now()
    kvc.rows.clear()
    kvc.kubectl("scale", "kvc/demo", "--replicas=3")
    try:
        seconds = kvc.wait_ready(3, timeout=600, watch_rows=True)
    finally:
        watch.stop()
    report(numbers, f"scale 5 -> 3 with {KEYS} keys (s)", round(seconds, 1))
    t_down_done = _now()
    for node in ("demo-3", "demo-4"):
        assert watch.held_when_gone(node) == [], f"{node}'s pod went while a map listed it"
        proof = watch.drained_while_live(node)
        assert proof is not None, (
            f"never saw {node} drained while its pod lived ({len(watch.ticks)} ticks, "
            f"errors {watch.errors[:3]}): {watch.transitions()[-8:]}"
        )
    assert {p["metadata"]["name"] for p in node_pods(cluster, namespace)} == {
        "demo-0", "demo-1", "demo-2"}  # fmt: skip
    reasons = [e["reason"] for e in sorted(kvc.events(), key=_event_time)]
    assert "RebalanceDone" in reasons, reasons
    assert "StatefulSetScaled" in reasons, reasons
    pvcs = {p["metadata"]["name"]: p for p in
            cluster.kubectl_json("-n", namespace, "get", "pvc")["items"]}  # fmt: skip
    for name in ("data-demo-3", "data-demo-4"):
        assert name in pvcs, f"retain policy: {name} should be kept, have {sorted(pvcs)}"
        assert "ringkv.io/retired-at-epoch" in pvcs[name]["metadata"].get("annotations", {})
    view = wait_balanced(kvc, 3)

    result = load.stop()
    judge_load(result, numbers, "scaling", {
        "at rest": (t_before, t_scale), "scale 3->5": (t_scale, t_scaled),
        "scale 5->3": (t_down, t_down_done)})  # fmt: skip
    expected = expected_values(result["acked"], result["uncertain"])
    _verify(load, expected, numbers, "after 5 -> 3")

    # 5. The operator dies mid-rebalance; its successor finishes the persisted plan.
    kvc.kubectl("delete", "pvc", "data-demo-3", "data-demo-4", "--ignore-not-found", timeout=90)
    kvc.kubectl("patch", "kvc", "demo", "--type=merge",
                "-p", '{"spec":{"storage":{"reclaimPolicy":"delete"}}}')  # fmt: skip
    (old_pod,) = cluster.kubectl_json("-n", operator, "get", "pods")["items"]
    kvc.kubectl("scale", "kvc/demo", "--replicas=4")

    def mid_plan() -> bool:
        rebalance = kvc.get().get("status", {}).get("rebalance") or {}
        return rebalance.get("stepsDone", 0) >= 1 and rebalance.get("stepsDone", 0) < rebalance.get(
            "stepsTotal", 0
        )

    procs.wait_until(mid_plan, timeout=180, interval=0.3, what="rebalance under way",
                     on_timeout=kvc.dump)  # fmt: skip
    done_at_kill = kvc.get()["status"]["rebalance"]
    cluster.kubectl("-n", operator, "delete", "pod", old_pod["metadata"]["name"], "--wait=false")
    report(numbers, "operator killed at rebalance step",
           f"{done_at_kill['stepsDone']}/{done_at_kill['stepsTotal']}")  # fmt: skip
    report(numbers, "scale 3 -> 4 across an operator restart (s)",
           round(kvc.wait_ready(4, timeout=600), 1))  # fmt: skip
    (new_pod,) = cluster.kubectl_json("-n", operator, "get", "pods")["items"]
    assert new_pod["metadata"]["uid"] != old_pod["metadata"]["uid"]
    assert "RebalanceResumed" in [e["reason"] for e in kvc.events()]
    _verify(load, expected, numbers, "after the operator restart")

    # 3b. reclaimPolicy delete at a scale-down: the drained node's volume goes with it.
    kvc.kubectl("scale", "kvc/demo", "--replicas=3")
    report(numbers, "scale 4 -> 3 (s)", round(kvc.wait_ready(3, timeout=600), 1))
    procs.wait_until(
        lambda: kvc.kubectl("get", "pvc", "data-demo-3", check=False).returncode != 0,
        timeout=60, what="data-demo-3 deleted (reclaimPolicy delete)", on_timeout=kvc.dump,
    )  # fmt: skip
    assert "VolumesReclaimed" in [e["reason"] for e in kvc.events()]
    names = {
        p["metadata"]["name"] for p in cluster.kubectl_json("-n", namespace, "get", "pvc")["items"]
    }
    assert names == {"data-demo-0", "data-demo-1", "data-demo-2"}, names
    _verify(load, expected, numbers, "after 4 -> 3")

    # 6. Delete the KVCluster: everything it owned goes, PVCs too (policy delete).
    kvc.kubectl("delete", "kvc", "demo", "--timeout=120s", timeout=150)

    def owned_gone() -> bool:
        kinds = "statefulset,service,pdb,configmap,pod,pvc"
        selector = "app.kubernetes.io/instance=demo"
        left = kvc.kubectl("get", kinds, "-l", selector, "-o", "name").stdout.split()
        pvcs = kvc.kubectl("get", "pvc", "-o", "name").stdout.split()
        return not left and not pvcs

    procs.wait_until(owned_gone, timeout=120, interval=1, what="owned objects gone",
                     on_timeout=kvc.dump)  # fmt: skip
    assert kvc.kubectl("get", "configmap", "demo-rebalance", check=False).returncode != 0
    log.warning("operator e2e numbers: %s", json.dumps(numbers))


def _verify(
    load: LoadProcess, expected: dict[str, Any], numbers: dict[str, Any], when: str
) -> None:
    path = load.work / "expected.json"
    path.write_text(json.dumps(expected))
    checked = load.once("verify", "verify", "--expected", str(path), direct=True, timeout=300)
    assert checked["checked"] == KEYS
    assert checked["wrong"] == [], (
        f"{len(checked['wrong'])} keys wrong {when}: {checked['wrong'][:5]}"
    )
    report(numbers, f"verify {KEYS} keys {when} (s)", round(checked["seconds"], 1))


def _ops_seen(load: LoadProcess) -> bool:
    """The load process is up and has completed operations (it logs nothing per op, so look
    at it being alive for a moment and not failing)."""
    assert load.child is not None
    if load.child.popen.poll() is not None:
        raise procs.Fatal(f"kvload exited: {procs.tail(load.child.log_path, 30)}")
    return True


def _settle(seconds: float) -> None:
    """A measured window of steady load (not a wait for a condition: the "before" sample)."""
    time.sleep(seconds)


def _now() -> float:
    return time.time()


def _event_time(event: dict[str, Any]) -> str:
    return str(event.get("lastTimestamp") or event.get("eventTime") or "")
