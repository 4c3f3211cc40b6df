"""Issue 13 through the operator: a KVClusterBackup of a cluster under write load, then a new
KVCluster of a different size restored from it (`spec.restoreFrom`), on the real control plane
with the operator installed by the chart.

The backup's point is per partition: partition p's file is the state after its log entries
1..I_p, I_p = `status.indexes[p]` of the KVClusterBackup. A record's version is its log index.
So, for every key, reading the source cluster once the load stopped: if the source's version is
<= I_p, nothing touched the key after the backup's point and the restored cluster must hold
exactly that (value and version); otherwise the restored record must be older than I_p. Keys
written only after the backup completed must be absent. Checked with kvnode's client against the
pods' addresses (the nodes forward to leaders).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from kvharness import procs
from kvharness.cluster import LocalCluster
from kvnode.client import Client
from kvnode.core.hashing import partition_of
from opsupport import Kvc, LoadProcess

pytestmark = pytest.mark.e2e

PARTITIONS = 8
KEYS = 2000


def kvcluster(name: str, replicas: int, **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "ringkv.io/v1alpha1",
        "kind": "KVCluster",
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "partitions": PARTITIONS, "replicationFactor": 3,
                 "storage": {"size": "1Gi", "reclaimPolicy": "delete"}, **extra},
    }  # fmt: skip


BACKUP = {
    "apiVersion": "ringkv.io/v1alpha1",
    "kind": "KVClusterBackup",
    "metadata": {"name": "nightly"},
    "spec": {"cluster": "demo", "storage": {"size": "1Gi"}},
}


def pod_urls(cluster: LocalCluster, ns: str, instance: str) -> list[str]:
    sel = f"app.kubernetes.io/instance={instance},app.kubernetes.io/component=node"
    pods = cluster.kubectl_json("-n", ns, "get", "pods", "-l", sel)["items"]
    return [f"http://{p['status']['podIP']}:7000" for p in pods if p["status"].get("podIP")]


async def read_all(urls: list[str], keys: list[str]) -> dict[str, tuple[str, int] | None]:
    out: dict[str, tuple[str, int] | None] = {}
    async with Client(urls, timeout=10.0, direct=False) as client:
        sem = asyncio.Semaphore(16)

        async def one(key: str) -> None:
            async with sem:
                e = await client.get(key)
                out[key] = None if e is None else (e.value, e.version)

        await asyncio.gather(*(one(k) for k in keys))
    return out


async def write_after(urls: list[str], n: int) -> list[str]:
    keys = [f"after-{i:04d}" for i in range(n)]
    async with Client(urls, timeout=10.0, direct=False) as client:
        for k in keys:
            await client.put(k, "written after the backup completed")
    return keys


async def count_keys(urls: list[str]) -> int:
    total, cursor = 0, None
    async with Client(urls, timeout=10.0, direct=False) as client:
        while True:
            page = await client.keys("", limit=1000, cursor=cursor)
            total += len(page.items)
            cursor = page.next_cursor
            if cursor is None:
                return total


def backup_status(cluster: LocalCluster, ns: str) -> dict[str, Any]:
    obj = cluster.kubectl_json("-n", ns, "get", "kvclusterbackup", "nightly")
    return dict(obj.get("status") or {})


def events_of(cluster: LocalCluster, ns: str, kind: str) -> list[str]:
    items = cluster.kubectl_json("-n", ns, "get", "events")["items"]
    return [e["reason"] for e in items if e["involvedObject"].get("kind") == kind]


@pytest.mark.timeout(900)
def test_backup_under_load_then_restore_into_a_bigger_cluster(
    cluster: LocalCluster, operator: str, namespace: str, tmp_path: Path
) -> None:
    ns = namespace
    source = Kvc(cluster, ns, "demo")
    restored = Kvc(cluster, ns, "copy")
    load = LoadProcess(cluster, ns, tmp_path)
    try:
        cluster.kubectl("apply", "-n", ns, "-f", "-", stdin=json.dumps(kvcluster("demo", 3)))
        source.wait_ready(3, timeout=240)
        fill = load.once("fill", "fill", "--keys", str(KEYS), direct=True, timeout=180)
        assert fill["failures"] == []
        load.start(KEYS, workers=4)
        time.sleep(3)  # writes flowing before the backup starts
        started = time.monotonic()
        cluster.kubectl("apply", "-n", ns, "-f", "-", stdin=json.dumps(BACKUP))
        procs.wait_until(
            lambda: backup_status(cluster, ns).get("phase") in ("Completed", "Failed"),
            timeout=300, interval=1.0, what="KVClusterBackup nightly finished",
            on_timeout=source.dump,
        )  # fmt: skip
        backup_seconds = time.monotonic() - started
        time.sleep(2)  # and after it completed
        run = load.stop()
        status = backup_status(cluster, ns)
        assert status["phase"] == "Completed", status
        assert status["verified"] is True
        assert sorted(int(p) for p in status["indexes"]) == list(range(PARTITIONS))
        assert status["keys"] >= KEYS
        assert status["startedAt"] <= status["completedAt"]
        assert {"BackupStarted", "BackupCompleted"} <= set(
            events_of(cluster, ns, "KVClusterBackup")
        )
        assert run["acked"], "the load wrote nothing during the backup"
        src_urls = pod_urls(cluster, ns, "demo")
        late_keys = asyncio.run(write_after(src_urls, 50))
        keys = [f"k{i:05d}" for i in range(KEYS)]
        src = asyncio.run(read_all(src_urls, keys))

        restore = kvcluster("copy", 4, restoreFrom={"backup": "nightly"})
        started = time.monotonic()
        cluster.kubectl("apply", "-n", ns, "-f", "-", stdin=json.dumps(restore))
        restored.wait_ready(4, timeout=360)
        restore_seconds = time.monotonic() - started
        dst_urls = pod_urls(cluster, ns, "copy")
        dst = asyncio.run(read_all(dst_urls, [*keys, *late_keys]))
        index = {int(p): i for p, i in status["indexes"].items()}
        exact = older = 0
        for key in keys:
            got, was = dst[key], src[key]
            assert got is not None, f"{key} missing after restore"
            assert was is not None
            if was[1] <= index[partition_of(key, PARTITIONS)]:
                assert got == was, f"{key}: restored {got}, the backup's point holds {was}"
                exact += 1
            else:
                assert got[1] <= index[partition_of(key, PARTITIONS)], (key, got)
                older += 1
        assert all(dst[k] is None for k in late_keys), "a write after the backup was restored"
        assert asyncio.run(count_keys(dst_urls)) == status["keys"]
        assert {"RestoreStarted"} <= set(events_of(cluster, ns, "KVCluster"))

        # A cluster with another partition count is refused, clearly, and nothing is restored.
        wrong = kvcluster("wrong", 3, restoreFrom={"backup": "nightly"})
        wrong["spec"]["partitions"] = 4
        cluster.kubectl("apply", "-n", ns, "-f", "-", stdin=json.dumps(wrong))
        procs.wait_until(
            lambda: "RestoreRefused" in events_of(cluster, ns, "KVCluster"),
            timeout=180, interval=1.0, what="RestoreRefused for kvc/wrong",
            on_timeout=Kvc(cluster, ns, "wrong").dump,
        )  # fmt: skip
        items = cluster.kubectl_json("-n", ns, "get", "events")["items"]
        (refused,) = [e for e in items if e["reason"] == "RestoreRefused"]
        assert "8 partitions but this cluster has 4" in refused["message"]
        assert cluster.kubectl_json("-n", ns, "get", "jobs", "wrong-restore", check=False) is None
        wrong_status = Kvc(cluster, ns, "wrong").get().get("status", {})
        assert wrong_status.get("phase") == "Bootstrapping"
        print(
            f"backup of {status['keys']} keys ({status['sizeBytes']} bytes) under load: "
            f"{backup_seconds:.1f}s; restore into 4 nodes -> Ready: {restore_seconds:.1f}s; "
            f"keys exact at the backup's point: {exact}, overwritten after it: {older}"
        )
    finally:
        load.kill()
