"""Issue 11, "must be shown": delete a pod AND its PVC under a write + strong-read load -> the
StatefulSet recreates it on an empty volume; the node refuses to rejoin its groups as a voter
(needs reseed) and the operator replaces each replica through the executor (remove the old
voter, seed a fresh copy out of band, add, catch up, verify) with no manual step. Then: every
replica of every partition has the same digest, every acknowledged write is readable, no strong
read was stale. Prints the time to restore full replication for the stated data size.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any

import pytest
import test_operator_scale as scale
from kvharness import procs
from kvharness.cluster import LocalCluster
from opsupport import (
    Kvc,
    LoadProcess,
    admin_call,
    judge_client_errors,
    newest_view,
    pod_ips,
    replica_digests,
    unavailability,
)

pytestmark = pytest.mark.e2e
log = logging.getLogger(__name__)

PARTITIONS = 8
BALLAST_KEYS = 10_000  # 2 KB each: about 20 MB of values on every node (RF 3 on 3 nodes)
VICTIM = "demo-1"
KVCLUSTER = {
    "apiVersion": "ringkv.io/v1alpha1",
    "kind": "KVCluster",
    "metadata": {"name": "demo"},
    "spec": {"replicas": 3, "partitions": PARTITIONS, "replicationFactor": 3,
             "replacement": {"maxConcurrent": 2}},
}  # fmt: skip


def pvc_uid(kvc: Kvc, name: str) -> str | None:
    done = kvc.kubectl("get", "pvc", name, "-o", "jsonpath={.metadata.uid}", check=False)
    return done.stdout.strip() or None


@pytest.mark.timeout(900)
def test_pod_and_pvc_deleted_replicas_reseeded_automatically(
    scenario: tuple[Kvc, LoadProcess], cluster: LocalCluster, namespace: str
) -> None:
    kvc, load = scenario
    numbers: dict[str, Any] = {}
    kvc.kubectl("apply", "-f", "-", stdin=json.dumps(KVCLUSTER))
    kvc.wait_ready(3, timeout=180)
    load.fill(scale.KEYS, ballast_keys=BALLAST_KEYS)
    ips = pod_ips(cluster, namespace)
    view = newest_view(list(ips.values()))
    assert view is not None
    epoch_before = view["epoch"]
    sizes = [admin_call(ips[VICTIM], "GET", f"/v1/admin/partitions/{p}") for p in range(8)]
    data_bytes = sum(int(s.get("size_bytes", 0)) for s in sizes)
    scale.report(numbers, "data on the lost node (keys, store bytes)",
                 (sum(int(s.get("keys", 0)) for s in sizes), data_bytes))  # fmt: skip

    load.start(scale.KEYS)
    time.sleep(2)  # a few seconds of load before the loss (measured window, not a wait)
    claim = f"data-{VICTIM}"
    old_uid = pvc_uid(kvc, claim)
    t0 = time.monotonic()
    kvc.kubectl("delete", "pvc", claim, "--wait=false")
    kvc.kubectl("delete", "pod", VICTIM, "--wait=false")

    def new_volume() -> bool:
        uid = pvc_uid(kvc, claim)
        return uid is not None and uid != old_uid

    procs.wait_until(new_volume, timeout=120, interval=0.5, what=f"a new {claim}",
                     on_timeout=kvc.dump)  # fmt: skip

    def replacing() -> bool:
        return "ReplicaReplacementStarted" in [e["reason"] for e in kvc.events()]

    procs.wait_until(replacing, timeout=180, interval=0.5, what="the operator starting a reseed",
                     on_timeout=kvc.dump)  # fmt: skip
    scale.report(numbers, "reseed started after the delete (s)", round(time.monotonic() - t0, 1))
    kvc.wait_ready(3, timeout=600)
    restored = time.monotonic() - t0
    scale.report(numbers, "full replication restored after the delete (s)", round(restored, 1))
    time.sleep(2)  # load on the repaired cluster too
    result = load.stop()

    events = kvc.events()
    done = [e["message"] for e in events if e["reason"] == "RebalanceDone"]
    assert done, [e["reason"] for e in events]
    # Real copies were streamed (a join that found the replica already there moves nothing):
    # the emptied node never reopened its old replicas, it got fresh ones.
    found = re.search(r"(\d+) bytes moved", done[-1])
    assert found is not None, done
    moved = int(found.group(1))
    assert moved > 0, done
    scale.report(numbers, "bytes streamed to the reseeded replicas", moved)
    ips = pod_ips(cluster, namespace)
    view = newest_view(list(ips.values()))
    assert view is not None
    assert view["epoch"] > epoch_before
    for p in range(PARTITIONS):
        st = admin_call(ips[VICTIM], "GET", f"/v1/admin/partitions/{p}")
        assert st["hosted"], st
        assert sorted(st["members"]) == ["demo-0", "demo-1", "demo-2"], st
        digests = replica_digests(ips, view["map"], p)
        assert len(set(digests.values())) == 1, (p, digests)
    scale.report(numbers, "partitions with equal digests on all 3 replicas", PARTITIONS)
    ready = admin_call(ips[VICTIM], "GET", "/readyz")
    assert ready["needs_reseed"] == [], ready

    assert result["stale_reads"] == [], f"stale strong reads: {result['stale_reads'][:10]}"
    judge_client_errors(result["errors"], at_most=2)
    scale.report(numbers, "client ops", len(result["samples"]))
    scale.report(numbers, "client errors (after retries)", len(result["errors"]))
    for err in result["errors"][:10]:
        print(f"[operator e2e] client error: {err}")
    gaps = unavailability(result["samples"], PARTITIONS)
    scale.report(numbers, "max gap between successful ops per partition (s)",
                 {p: round(g, 2) for p, g in gaps.items()})  # fmt: skip
    expected = scale.expected_values(result["acked"], result["uncertain"])
    scale._verify(load, expected, numbers, "after the reseed")
