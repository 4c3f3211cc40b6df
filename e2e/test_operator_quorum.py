"""Issue 11, "must be shown": stop two of the nodes holding a partition -> the operator's
`QuorumLost` condition names exactly the partitions that lost their quorum, and keys of the
other partitions keep serving.

RF 3 on 4 nodes, so replica sets differ: stopping demo-0 and demo-1 takes the partitions whose
three replicas include both below quorum (1 of 3 left) while every other partition keeps 2 of 3.
The two node processes are frozen with SIGSTOP (their pods stay Running, the processes answer
nothing: the harness's way to "stop" a node without the StatefulSet replacing it), and resumed
with SIGCONT before the liveness probe (60 s of failures) would restart them.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kvharness import procs
from kvharness.cluster import LocalCluster
from kvnode.core.hashing import partition_of
from opsupport import Kvc, cluster_view, node_pods

pytestmark = pytest.mark.e2e
log = logging.getLogger(__name__)

PARTITIONS = 8
KVCLUSTER = {
    "apiVersion": "ringkv.io/v1alpha1",
    "kind": "KVCluster",
    "metadata": {"name": "demo"},
    "spec": {"replicas": 4, "partitions": PARTITIONS, "replicationFactor": 3},
}  # fmt: skip
STOPPED = ("demo-0", "demo-1")


@pytest.fixture
def kvc(
    cluster: LocalCluster, operator: str, namespace: str, request: pytest.FixtureRequest
) -> Iterator[Kvc]:
    kvc = Kvc(cluster, namespace)
    yield kvc
    rep = getattr(request.node, "rep_call", None)
    if rep is None or rep.failed:
        kvc.dump()


def node_pids(ns: str, pod: str) -> list[int]:
    """The processes of `pod`'s node container in namespace `ns` (by their KVNODE_HOST, which
    names the pod and the test's own namespace, so no other test's processes match)."""
    needle = f"KVNODE_HOST={pod}.demo-peers.{ns}.svc.".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = (entry / "environ").read_bytes()
        except OSError:
            continue
        if any(v.startswith(needle) for v in env.split(b"\0")):
            pids.append(int(entry.name))
    return pids


def signal_all(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            log.warning("pid %d is gone (restarted by its liveness probe?)", pid)


def http(method: str, url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(req, timeout=5) as resp:
        out = json.loads(resp.read())
    assert isinstance(out, dict)
    return out


def key_in(partition: int) -> str:
    return next(k for i in range(10_000) if partition_of(k := f"q{i}", PARTITIONS) == partition)


def quorum_lost(kvc: Kvc) -> dict[str, Any]:
    conds = {c["type"]: c for c in kvc.get().get("status", {}).get("conditions", [])}
    return conds.get("QuorumLost", {})


@pytest.mark.timeout(600)
def test_quorum_lost_names_the_partitions_and_the_others_keep_serving(
    kvc: Kvc, cluster: LocalCluster, namespace: str
) -> None:
    kvc.kubectl("apply", "-f", "-", stdin=json.dumps(KVCLUSTER))
    kvc.wait_ready(4, timeout=180)
    ips = {p["metadata"]["name"]: p["status"]["podIP"] for p in node_pods(cluster, namespace)}
    replicas = cluster_view(ips["demo-2"])["map"]["replicas"]
    lost = [p for p, r in enumerate(replicas) if set(STOPPED) <= set(r)]
    kept = [p for p in range(PARTITIONS) if p not in lost]
    assert lost, f"no partition has both {STOPPED}: {replicas}"
    assert kept, f"every partition has both {STOPPED}: {replicas}"
    pids = {pod: node_pids(namespace, pod) for pod in STOPPED}
    assert all(pids.values()), f"node processes not found: {pids}"
    assert quorum_lost(kvc).get("status") == "False", quorum_lost(kvc)

    stopped = [pid for pod in STOPPED for pid in pids[pod]]
    signal_all(stopped, signal.SIGSTOP)
    try:
        want = f"partitions without a quorum or a leader: {', '.join(map(str, lost))}"

        def named() -> bool:
            c = quorum_lost(kvc)
            return c.get("status") == "True" and c.get("message") == want

        procs.wait_until(named, timeout=40, interval=0.5, what=f"QuorumLost naming {lost}",
                         on_timeout=kvc.dump)  # fmt: skip

        # Every partition that kept its quorum serves a write and a strong read (through a
        # live node, which forwards to the partition's leader; re-elections may take a while).
        base = f"http://{ips['demo-2']}:7000/v1/kv"
        for p in kept:
            key = key_in(p)

            def serves(key: str = key) -> bool:
                try:
                    http("PUT", f"{base}/{key}", {"value": "v"})
                    got = http("GET", f"{base}/{key}?consistency=strong")
                except (OSError, urllib.error.URLError) as exc:
                    log.info("%s not served yet: %s", key, exc)
                    return False
                return got.get("value") == "v"

            procs.wait_until(serves, timeout=20, interval=0.5, what=f"partition {p} serving",
                             on_timeout=kvc.dump)  # fmt: skip
        # ... and a partition without a quorum does not acknowledge a write.
        with pytest.raises((OSError, urllib.error.URLError)):
            http("PUT", f"{base}/{key_in(lost[0])}", {"value": "nope"})
        assert kvc.get()["status"]["phase"] == "Degraded"
    finally:
        signal_all(stopped, signal.SIGCONT)

    procs.wait_until(lambda: quorum_lost(kvc).get("status") == "False", timeout=90,
                     interval=0.5, what="QuorumLost cleared", on_timeout=kvc.dump)  # fmt: skip
    kvc.wait_ready(4, timeout=120)
    reasons = [e["reason"] for e in kvc.events()]
    assert "QuorumLost" in reasons, reasons
    assert "QuorumRestored" in reasons, reasons
