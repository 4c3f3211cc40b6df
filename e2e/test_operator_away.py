"""Issue 11, "must be shown": a node kept away past `spec.replacement.after` -> its replicas are
re-placed on the other nodes and every partition is fully replicated again; when it returns,
its stale copies are dropped and replicas move back to it (the placement over all nodes).

The node is kept away the way a real cluster keeps a pod away: the (only) Kubernetes node is
cordoned (`kubectl cordon`) and the pod deleted, so its replacement stays Pending, unscheduled,
until `kubectl uncordon`. 4 nodes, RF 3, 8 partitions, 10 000 keys under a write +
strong-read load, plus 10 000 keys of 2 KB; prints the time to restore full replication and
to move back.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
import test_operator_scale as scale
from kvharness import procs
from kvharness.cluster import LocalCluster
from opsupport import (
    Kvc,
    LoadProcess,
    judge_client_errors,
    newest_view,
    pod_ips,
    replica_digests,
    unavailability,
)

pytestmark = pytest.mark.e2e
log = logging.getLogger(__name__)

PARTITIONS = 8
BALLAST_KEYS = 10_000  # 2 KB each: about 20 MB of values, RF 3 over 4 nodes
AWAY = "demo-3"
KVCLUSTER = {
    "apiVersion": "ringkv.io/v1alpha1",
    "kind": "KVCluster",
    "metadata": {"name": "demo"},
    "spec": {"replicas": 4, "partitions": PARTITIONS, "replicationFactor": 3,
             "replacement": {"after": "20s", "maxConcurrent": 2}},
}  # fmt: skip


def k8s_node(cluster: LocalCluster) -> str:
    names = cluster.kubectl("get", "nodes", "-o", "jsonpath={.items[*].metadata.name}").stdout
    (node,) = names.split()
    return node


@pytest.fixture
def scenario(
    scenario: tuple[Kvc, LoadProcess], cluster: LocalCluster
) -> Iterator[tuple[Kvc, LoadProcess]]:
    """The shared operator scenario (``e2e/conftest.py``); the node is never left cordoned."""
    yield scenario
    cluster.kubectl("uncordon", k8s_node(cluster), check=False)


def replicas_of(ips: dict[str, str]) -> list[list[str]] | None:
    view = newest_view(list(ips.values()))
    return None if view is None else [list(r) for r in view["map"]["replicas"]]


@pytest.mark.timeout(900)
def test_a_node_away_too_long_is_re_placed_and_gets_replicas_back(
    scenario: tuple[Kvc, LoadProcess], cluster: LocalCluster, namespace: str
) -> None:
    kvc, load = scenario
    numbers: dict[str, Any] = {}
    kvc.kubectl("apply", "-f", "-", stdin=json.dumps(KVCLUSTER))
    kvc.wait_ready(4, timeout=240)
    load.fill(scale.KEYS, ballast_keys=BALLAST_KEYS)
    before = replicas_of(pod_ips(cluster, namespace))
    assert before is not None
    held = [p for p, r in enumerate(before) if AWAY in r]
    scale.report(numbers, f"partitions on {AWAY} before", held)

    load.start(scale.KEYS)
    time.sleep(2)  # steady load before the node goes (measured window, not a wait)
    node = k8s_node(cluster)
    cluster.kubectl("cordon", node)
    t0 = time.monotonic()
    kvc.kubectl("delete", "pod", AWAY)

    def pending() -> bool:
        pod = cluster.kubectl_json("-n", namespace, "get", "pod", AWAY)
        return not pod["spec"].get("nodeName") and pod["status"].get("phase") == "Pending"

    procs.wait_until(pending, timeout=60, interval=0.5, what=f"{AWAY} recreated and unscheduled",
                     on_timeout=kvc.dump)  # fmt: skip

    survivors = [f"demo-{i}" for i in range(3)]

    def re_placed() -> list[list[str]] | None:
        reasons = [e["reason"] for e in kvc.events()]
        now = replicas_of({k: v for k, v in pod_ips(cluster, namespace).items() if k != AWAY})
        if now is None or "RebalanceDone" not in reasons:
            return None
        full = all(len(r) == 3 and set(r) <= set(survivors) for r in now)
        return now if full else None

    after = procs.wait_until(re_placed, timeout=300, interval=0.5,
                             what="replicas re-placed on the other nodes",
                             on_timeout=kvc.dump)  # fmt: skip
    restored = time.monotonic() - t0
    scale.report(numbers, f"{AWAY} deleted -> full replication on 3 nodes (s, incl. the 20s "
                 "replacement.after)", round(restored, 1))  # fmt: skip
    reasons = [e["reason"] for e in kvc.events()]
    assert "ReplicaReplacementStarted" in reasons, reasons
    ips = pod_ips(cluster, namespace)
    view = newest_view([v for k, v in ips.items() if k != AWAY])
    assert view is not None
    for p in held:
        digests = replica_digests(ips, view["map"], p)
        assert len(set(digests.values())) == 1, (p, digests)
    scale.report(numbers, "re-placed partitions with equal digests on their 3 replicas",
                 len(held))  # fmt: skip
    time.sleep(2)
    result = load.stop()
    gaps = unavailability(result["samples"], PARTITIONS)
    scale.report(numbers, "max gap between successful ops per partition (s)",
                 {p: round(g, 2) for p, g in gaps.items()})  # fmt: skip
    scale.report(numbers, "client errors (after retries)", len(result["errors"]))
    for err in result["errors"][:10]:
        print(f"[operator e2e] client error: {err}")
    assert result["stale_reads"] == [], f"stale strong reads: {result['stale_reads'][:10]}"
    judge_client_errors(result["errors"], at_most=2)
    expected = scale.expected_values(result["acked"], result["uncertain"])
    scale._verify(load, expected, numbers, "with the node away")

    # It comes back: its old copies are dropped, then replicas move back to it.
    t1 = time.monotonic()
    cluster.kubectl("uncordon", node)
    kvc.wait_ready(4, timeout=400)
    scale.report(numbers, f"{AWAY} back -> rebalanced onto 4 nodes (s)",
                 round(time.monotonic() - t1, 1))  # fmt: skip
    reasons = [e["reason"] for e in kvc.events()]
    assert "StaleReplicasDropped" in reasons, reasons
    final = replicas_of(pod_ips(cluster, namespace))
    assert final is not None
    assert any(AWAY in r for r in final), final
    assert all(len(r) == 3 for r in final), final
    scale.report(numbers, f"partitions on {AWAY} after it returned",
                 [p for p, r in enumerate(final) if AWAY in r])  # fmt: skip
    assert after != final
    scale._verify(load, expected, numbers, "after the node returned")
