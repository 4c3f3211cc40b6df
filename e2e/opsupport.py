"""Helpers of the operator e2e scenarios (e2e/test_operator_*.py): a KVCluster seen through the
real kubectl, the client process (e2e/kvload.py) run as an in-cluster client, the nodes' maps
read from their pods, and a watcher that proves leaving nodes were drained before their pods
were deleted."""

from __future__ import annotations

import itertools
import json
import logging
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes
from kvharness import procs
from kvharness.cluster import LocalCluster

log = logging.getLogger(__name__)
KVLOAD = Path(__file__).resolve().parent / "kvload.py"
NODE_LABELS = "app.kubernetes.io/instance=demo,app.kubernetes.io/component=node"


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Kvc:
    """The KVCluster `demo` in `ns`, read with the real kubectl."""

    cluster: LocalCluster
    ns: str
    name: str = "demo"
    rows: list[str] = field(default_factory=list)  # `kubectl get kvc` rows seen mid-rebalance

    def kubectl(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.cluster.kubectl("-n", self.ns, *args, **kw)

    def get(self) -> dict[str, Any]:
        obj = self.cluster.kubectl_json("-n", self.ns, "get", "kvc", self.name)
        assert isinstance(obj, dict)
        return obj

    def row(self) -> str:
        return self.kubectl("get", "kvc", self.name, "--no-headers").stdout.strip()

    def converged(self, replicas: int) -> bool:
        obj = self.get()
        status = obj.get("status", {})
        ready = [c for c in status.get("conditions", []) if c["type"] == "Ready"]
        return bool(
            ready
            and ready[0]["status"] == "True"
            and ready[0].get("observedGeneration") == obj["metadata"]["generation"]
            and status.get("replicas") == replicas
            and status.get("readyReplicas") == replicas
        )

    def wait_ready(self, replicas: int, *, timeout: float, watch_rows: bool = False) -> float:
        """Wait until converged at `replicas`; returns the seconds waited. With `watch_rows`,
        remembers the `kubectl get kvc` rows printed while the phase is Rebalancing."""
        started = time.monotonic()

        def check() -> bool:
            if watch_rows:
                row = self.row()
                if "Rebalancing" in row:
                    self.rows.append(row)
            return self.converged(replicas)

        what = f"kvc/{self.name} Ready at {replicas}"
        procs.wait_until(check, timeout=timeout, interval=0.5, what=what, on_timeout=self.dump)
        return time.monotonic() - started

    def events(self) -> list[dict[str, Any]]:
        items = self.cluster.kubectl_json("-n", self.ns, "get", "events")["items"]
        return [e for e in items if e["involvedObject"].get("kind") == "KVCluster"]

    def dump(self) -> None:
        """What explains a failure: the KVCluster, its objects, Events, operator and node logs."""
        for args in (
            ("describe", "kvc", self.name),
            ("get", "kvc,sts,pods,pvc,svc,pdb,configmap,jobs,kvclusterbackups", "-o", "wide"),
            ("get", "events", "--sort-by=.lastTimestamp"),
            ("describe", "pods", "-l", NODE_LABELS),
        ):
            done = self.kubectl(*args, check=False)
            log.error("==== kubectl %s ====\n%s%s", " ".join(args), done.stdout, done.stderr)
        done = self.cluster.kubectl("-n", "ringkv-system", "logs", "deployment/ringkv-operator",
                                    "--tail=300", check=False)  # fmt: skip
        log.error("==== operator logs ====\n%s%s", done.stdout, done.stderr)
        self.cluster.dump_logs()


def node_pods(cluster: LocalCluster, ns: str) -> list[dict[str, Any]]:
    items = cluster.kubectl_json("-n", ns, "get", "pods", "-l", NODE_LABELS)["items"]
    return list(items)


def cluster_view(ip: str, timeout: float = 3.0) -> dict[str, Any]:
    """`GET /v1/cluster` of the node listening on `ip` (its pod IP)."""
    with urllib.request.urlopen(f"http://{ip}:7000/v1/cluster", timeout=timeout) as resp:
        body = json.loads(resp.read())
    assert isinstance(body, dict)
    return body


def newest_view(ips: list[str]) -> dict[str, Any] | None:
    """The view of the node holding the newest map, among those answering."""
    best: dict[str, Any] | None = None
    for ip in ips:
        try:
            view = cluster_view(ip)
        except (OSError, ValueError):
            continue
        if best is None or view["epoch"] > best["epoch"]:
            best = view
    return best


class LoadProcess:
    """e2e/kvload.py as an in-cluster client: started in a mount namespace whose /etc/hosts
    resolves the client Service and the pods' headless names (`with_cluster_dns`)."""

    def __init__(self, cluster: LocalCluster, ns: str, work: Path) -> None:
        self.cluster, self.work = cluster, work
        self.url = f"http://demo.{ns}.svc.cluster.local:7000"
        self.child: procs.Child | None = None
        self.stop_file = work / "stop"

    def argv(self, out: Path, *args: str, direct: bool = False) -> list[str]:
        flags = ["--direct"] if direct else []
        base = [sys.executable, str(KVLOAD), "--url", self.url, "--out", str(out), *flags, *args]
        return self.cluster.with_cluster_dns(base)

    def fill(self, keys: int, *, ballast_keys: int = 0, timeout: float = 300) -> Any:
        """Write the ``keys`` the load later checks, then ``ballast_keys`` other keys with 2 KB
        values so that copies measured by a test are not trivially small; no write may fail. The
        fill's result (``seconds``, ...)."""
        filled = self.once("fill", "fill", "--keys", str(keys), timeout=timeout)
        assert filled["failures"] == [], filled["failures"][:5]
        if ballast_keys:
            ballast = self.once("ballast", "fill", "--keys", str(ballast_keys), "--prefix", "b",
                                "--value-size", "2048", timeout=timeout)  # fmt: skip
            assert ballast["failures"] == [], ballast["failures"][:5]
        return filled

    def once(self, name: str, *args: str, direct: bool = False, timeout: float) -> Any:
        """Run one command (fill/verify) to completion; its JSON result."""
        out = self.work / f"{name}.json"
        done = subprocess.run(self.argv(out, *args, direct=direct), capture_output=True,
                              text=True, timeout=timeout, check=False)  # fmt: skip
        assert done.returncode == 0, f"kvload {name} failed:\n{done.stderr[-3000:]}"
        return json.loads(out.read_text())

    def start(self, keys: int, workers: int = 4) -> None:
        self.stop_file.unlink(missing_ok=True)
        argv = self.argv(self.work / "run.json", "run", "--keys", str(keys),
                         "--workers", str(workers), "--stop-file", str(self.stop_file),
                         direct=True)  # fmt: skip
        self.child = procs.start("kvload", argv, log_path=self.work / "kvload.log")

    def stop(self, timeout: float = 60.0) -> dict[str, Any]:
        assert self.child is not None
        self.stop_file.touch()
        try:
            self.child.popen.wait(timeout=timeout)
        finally:
            if self.child.popen.poll() is None:
                procs.kill_group(self.child.pid, grace=5, waiter=self.child.popen.wait)
        assert self.child.popen.returncode == 0, procs.tail(self.child.log_path, 40)
        self.child = None
        result = json.loads((self.work / "run.json").read_text())
        assert isinstance(result, dict)
        return result

    def kill(self) -> None:
        """Cleanup after a failure: the load process never outlives its test."""
        if self.child is not None and self.child.popen.poll() is None:
            procs.kill_group(self.child.pid, grace=5, waiter=self.child.popen.wait)


@dataclass(frozen=True)
class Tick:
    t: float
    epoch: int | None
    holders: frozenset[str]  # nodes holding a replica in the newest map, read before `live`
    live: frozenset[str]  # node pods neither terminating nor gone


class DrainWatch(threading.Thread):
    """Polls, in this order, the map of `demo-0` (a node that stays; the executor installs the
    final map on every staying node before it reports done) and the node pods, so a tick whose
    map lists no replica on a node while that node's pod is still live proves the node was
    drained before its pod was deleted (maps only move forward). Fast ticks (the Kubernetes
    client, one HTTP GET): the window between the final map and the StatefulSet shrinking is
    about one reconcile pass."""

    def __init__(self, cluster: LocalCluster, ns: str, interval: float = 0.05) -> None:
        super().__init__(daemon=True, name="drain-watch")
        self.ns, self.interval = ns, interval
        self.api = kubernetes.client.CoreV1Api(
            kubernetes.config.new_client_from_config(str(cluster.kubeconfig))
        )
        self.ticks: list[Tick] = []
        self.errors: list[str] = []
        self._halt = threading.Event()

    def _pods(self) -> dict[str, str | None]:
        """Node pods neither terminating nor gone: name -> pod IP."""
        items = self.api.list_namespaced_pod(self.ns, label_selector=NODE_LABELS).items
        return {p.metadata.name: p.status.pod_ip for p in items
                if p.metadata.deletion_timestamp is None}  # fmt: skip

    def run(self) -> None:
        anchor = self._pods()["demo-0"]
        assert anchor is not None
        while not self._halt.is_set():
            try:
                view = cluster_view(anchor, timeout=2.0)
                live = self._pods()
                holders = frozenset(n for r in view["map"]["replicas"] for n in r)
                self.ticks.append(Tick(time.monotonic(), view["epoch"], holders, frozenset(live)))
            except Exception as exc:  # a failed poll is recorded, the next one tries again
                self.errors.append(repr(exc))
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=30)

    def transitions(self) -> list[Tick]:
        """The ticks where the epoch or the live pods changed (for failure messages)."""
        return [t for i, t in enumerate(self.ticks) if i == 0 or
                (t.epoch, t.live) != (self.ticks[i - 1].epoch, self.ticks[i - 1].live)]  # fmt: skip

    def drained_while_live(self, node: str) -> Tick | None:
        """The first tick showing `node` live and holding no replica, if any."""
        return next((t for t in self.ticks if node in t.live and node not in t.holders), None)

    def held_when_gone(self, node: str) -> list[Tick]:
        """Ticks where `node`'s pod was terminating or gone while a map still listed it."""
        return [t for t in self.ticks if node not in t.live and node in t.holders]


def pod_ips(cluster: LocalCluster, ns: str) -> dict[str, str]:
    """Node pod name -> pod IP, for the pods that have one."""
    return {p["metadata"]["name"]: p["status"]["podIP"] for p in node_pods(cluster, ns)
            if (p.get("status") or {}).get("podIP")}  # fmt: skip


def admin_call(ip: str, method: str, path: str, timeout: float = 15.0) -> dict[str, Any]:
    """One admin API call to the node at `ip`; its JSON answer (raises on an error status)."""
    req = urllib.request.Request(f"http://{ip}:7000{path}", method=method, data=None)
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        body = json.loads(resp.read() or b"{}")
    assert isinstance(body, dict)
    return body


def replica_digests(ips: dict[str, str], pmap: dict[str, Any], partition: int,
                    timeout: float = 60.0) -> dict[str, str]:  # fmt: skip
    """Every replica's digest of `partition` at one log index (a marker replicated by its
    leader): equal digests mean equal data."""
    replicas = pmap["replicas"][partition]
    base = f"/v1/admin/partitions/{partition}"
    states = {n: admin_call(ips[n], "GET", base) for n in replicas}
    leader = next(n for n, s in states.items() if s.get("role") == "leader")
    index = admin_call(ips[leader], "POST", f"{base}/digest")["index"]
    found: dict[str, str] = {}

    def computed() -> bool:
        for n in replicas:
            if n not in found:
                d = admin_call(ips[n], "GET", f"{base}/digest?index={index}").get("digest")
                if d is not None:
                    found[n] = str(d)
        return len(found) == len(replicas)

    procs.wait_until(computed, timeout=timeout, interval=0.3,
                     what=f"digests of partition {partition} at index {index}")  # fmt: skip
    return found


def unavailability(samples: list[list[Any]], partitions: int) -> dict[int, float]:
    """Per partition, the longest gap (s) between two successful client operations on its keys
    (a sample is [start, seconds, op, ok, key]); the end of an op counts as its success time."""
    from kvnode.core.hashing import partition_of

    done: dict[int, list[float]] = {p: [] for p in range(partitions)}
    for t0, dt, _op, ok, key in samples:
        if ok:
            done[partition_of(key, partitions)].append(t0 + dt)
    gaps = {}
    for p, times in done.items():
        times.sort()
        gaps[p] = max((b - a for a, b in itertools.pairwise(times)), default=0.0)
    return gaps


def judge_client_errors(errors: list[dict[str, Any]], *, at_most: int) -> None:
    """What a client can still see past its own retries when a node stops: a write in flight
    on a connection the stopping node closed (`UnknownOutcome`: it may or may not have
    applied; the verification accepts either value of such a write). Anything else (an
    `Unavailable` past the deadline, a `NotLeader` the client could not follow) is a failure,
    and so are more than `at_most` of them."""
    kinds = [e["error"].split(":", 1)[0] for e in errors]
    assert all(k == "UnknownOutcome" for k in kinds), errors[:10]
    assert len(errors) <= at_most, errors[:10]
