"""The process kubelet: one fake node whose pods run as local processes on 127.0.x.y addresses.

A level-based loop (poll, not watch, for simplicity and robustness): every tick it binds
unscheduled pods, provisions volumes for pending claims, syncs a `PodWorker` per pod bound to the
node, writes pod status when it changed, finalises deleted pods (the real kubelet's last step:
DELETE with grace 0 and a uid precondition, without which pods stay Terminating forever) and
refreshes every pod's hosts file with the headless-Service records and the client Service names
(services.py). Each pod gets a fresh IP per uid from the cluster slot's block (netplan), as real
pods do when re-created. Containers get the in-cluster API address (KUBERNETES_SERVICE_HOST/PORT)
and their service-account token volume, so the standard in-cluster configuration works.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kvharness import netplan, procs
from kvharness.kube import ApiError, Kube
from kvharness.kubelet import images, runtime, services, volumes
from kvharness.kubelet import node as node_mod
from kvharness.kubelet.events import EventRecorder
from kvharness.kubelet.logserver import LogServer
from kvharness.kubelet.podworker import PodWorker

log = logging.getLogger(__name__)
JsonDict = dict[str, Any]


@dataclass(frozen=True, slots=True)
class KubeletConfig:
    """Settings of one process kubelet (defaults suit tests: fast ticks, short back-off)."""

    run_dir: Path
    node_name: str = "ringkv-e2e-node"
    slot: netplan.Slot = field(default_factory=lambda: netplan.Slot(0))
    api_port: int = netplan.APISERVER_PORT
    image_map: Path | None = None
    version: str = "v1.33.0"
    tick: float = 0.3
    backoff_base: float = 1.0
    backoff_cap: float = 10.0
    heartbeat: float = 20.0
    tls_cert: Path | None = None  # serving cert of the /containerLogs endpoint (kubectl logs)
    tls_key: Path | None = None


def service_env(host: str, port: int) -> dict[str, str]:
    """The variables every container gets for the `kubernetes` Service (pure).

    The real kubelet takes them from the Service's ClusterIP (443), which kube-proxy forwards
    to the apiserver; with no kube-proxy here they name the apiserver's own address and port,
    which its certificate covers. `load_incluster_config()` reads exactly these two.
    """
    return {
        "KUBERNETES_SERVICE_HOST": host,
        "KUBERNETES_SERVICE_PORT": str(port),
        "KUBERNETES_SERVICE_PORT_HTTPS": str(port),
        "KUBERNETES_PORT": f"tcp://{host}:{port}",
        f"KUBERNETES_PORT_{port}_TCP": f"tcp://{host}:{port}",
        f"KUBERNETES_PORT_{port}_TCP_PROTO": "tcp",
        f"KUBERNETES_PORT_{port}_TCP_PORT": str(port),
        f"KUBERNETES_PORT_{port}_TCP_ADDR": host,
    }


class ProcessKubelet:
    """Implements the pod worker's `NodeContext` and runs the sync loop."""

    def __init__(self, kube: Kube, config: KubeletConfig) -> None:
        self.kube = kube
        self.config = config
        self.run_dir = config.run_dir
        self.host_ip = config.slot.host_ip
        self.images = images.load(config.image_map)
        self.service_env = service_env(self.host_ip, config.api_port)
        self.backoff_base = config.backoff_base
        self.backoff_cap = config.backoff_cap
        self.executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="probe")
        self.workers: dict[str, PodWorker] = {}
        self.sent: dict[str, JsonDict] = {}
        self._ips = 0
        self._last_heartbeat = 0.0
        self.events = EventRecorder(kube, host=config.node_name)
        self._logs: LogServer | None = None
        self._logs_port = 0

    # ---- NodeContext ------------------------------------------------------------------
    def config_map(self, namespace: str, name: str) -> JsonDict | None:
        return self.kube.get_or_none(f"/api/v1/namespaces/{namespace}/configmaps/{name}")

    def secret(self, namespace: str, name: str) -> JsonDict | None:
        return self.kube.get_or_none(f"/api/v1/namespaces/{namespace}/secrets/{name}")

    def claim_path(self, namespace: str, claim: str) -> Path | None:
        return node_mod.claim_path(self.kube, namespace, claim, self.run_dir / "volumes")

    def event(self, pod: JsonDict, reason: str, message: str, *, warning: bool = False) -> None:
        self.events.record(pod, reason, message, warning=warning, now=time.time())

    def service_account_token(self, pod: JsonDict, source: JsonDict) -> str:
        """A token bound to this pod incarnation, from the TokenRequest API (as the kubelet)."""
        meta = pod["metadata"]
        account = pod["spec"].get("serviceAccountName") or "default"
        spec: JsonDict = {
            "expirationSeconds": int(source.get("expirationSeconds", 3607)),
            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod",
                               "name": meta["name"], "uid": meta["uid"]},
        }  # fmt: skip
        if source.get("audience"):
            spec["audiences"] = [source["audience"]]
        path = f"/api/v1/namespaces/{meta['namespace']}/serviceaccounts/{account}/token"
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
        return str(self.kube.create(path, body)["status"]["token"])

    # ---- loop -------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Sync until `stop` is set, then stop every pod process."""
        if not runtime.is_root():
            raise RuntimeError("the process kubelet needs root (mount namespaces, bind mounts)")
        if self.config.tls_cert and self.config.tls_key:
            self._logs = LogServer(
                self.run_dir / "logs" / "pods", cert=self.config.tls_cert, key=self.config.tls_key,
                host=self.host_ip, port=netplan.KUBELET_PORT,
            )  # fmt: skip
            self._logs_port = self._logs.start()
        try:
            while not stop.is_set():
                try:
                    self.tick(time.time())
                except (ApiError, OSError) as exc:
                    log.warning("kubelet tick failed (will retry): %s", exc)
                stop.wait(self.config.tick)
        finally:
            self.shutdown()

    def tick(self, now: float) -> None:
        """One level-based pass over node, claims and pods."""
        if now - self._last_heartbeat >= self.config.heartbeat:
            node_mod.register(
                self.kube, self.config.node_name, host_ip=self.host_ip,
                version=self.config.version, now=now, port=self._logs_port,
            )  # fmt: skip
            self._last_heartbeat = now
        for pod in node_mod.bind_pending(self.kube, self.config.node_name):
            meta = pod["metadata"]
            node = self.config.node_name
            msg = f"Successfully assigned {meta['namespace']}/{meta['name']} to {node}"
            log.info(msg)
            self.events.record(pod, "Scheduled", msg, warning=False, now=now,
                               component="default-scheduler")  # fmt: skip
        node_mod.provision(self.kube, self.run_dir / "volumes")
        selector = f"spec.nodeName={self.config.node_name}"
        pods = self.kube.get("/api/v1/pods", fieldSelector=selector)["items"]
        seen = set()
        for pod in pods:
            uid = pod["metadata"]["uid"]
            seen.add(uid)
            try:
                self._sync_pod(pod, now)
            except Exception as exc:  # one broken pod must not stop the node
                log.exception("sync of pod %s failed", pod["metadata"]["name"])
                self.event(pod, "FailedSync", f"process kubelet: {exc!r}", warning=True)
        for uid in set(self.workers) - seen:
            log.info("pod %s is gone from the API: stopping its processes", self.workers[uid].name)
            self.workers.pop(uid).kill_now()
            self.sent.pop(uid, None)
            self.events.forget(uid)
        self._write_hosts_files()

    def _sync_pod(self, pod: JsonDict, now: float) -> None:
        uid = pod["metadata"]["uid"]
        worker = self.workers.get(uid)
        if worker is None:
            terminal = pod.get("status", {}).get("phase") in ("Succeeded", "Failed")
            if terminal and not pod["metadata"].get("deletionTimestamp"):
                return
            worker = PodWorker(pod, ip=self.config.slot.pod_ip(self._ips), node=self, now=now)
            self._ips += 1
            self.workers[uid] = worker
        worker.sync(pod, now)
        self._report(worker, now)
        if worker.finished():
            self._finalise(worker)

    def _report(self, worker: PodWorker, now: float) -> None:
        status = worker.status(now)
        if self.sent.get(worker.uid) == status:
            return
        ns, name = worker.pod["metadata"]["namespace"], worker.pod["metadata"]["name"]
        try:
            self.kube.patch_strategic(f"/api/v1/namespaces/{ns}/pods/{name}/status", {
                "metadata": {"uid": worker.uid}, "status": status,
            })  # fmt: skip
            self.sent[worker.uid] = status
        except ApiError as err:
            if err.status not in (404, 409):
                raise

    def _finalise(self, worker: PodWorker) -> None:
        """Delete the terminated pod for good (grace 0, only this incarnation by uid)."""
        ns, name = worker.pod["metadata"]["namespace"], worker.pod["metadata"]["name"]
        body = {"gracePeriodSeconds": 0, "preconditions": {"uid": worker.uid}}
        try:
            self.kube.delete(f"/api/v1/namespaces/{ns}/pods/{name}", body)
            log.info("deleted terminated pod %s", worker.name)
        except ApiError as err:
            if err.status not in (404, 409):
                raise

    def _write_hosts_files(self) -> None:
        by_name: dict[str, JsonDict] = {}
        all_services = self.kube.get("/api/v1/services")["items"]
        for svc in all_services:
            by_name[f"{svc['metadata']['namespace']}/{svc['metadata']['name']}"] = svc
        live = [w for w in self.workers.values() if w.term_deadline is None]
        states = [(w.pod, w.ip, w.ready()) for w in live]
        records = volumes.dns_records(states, by_name.get)
        clients = services.service_records(states, all_services)
        for w in self.workers.values():
            extra = services.hosts_lines(clients, w.pod["metadata"]["namespace"])
            content = volumes.hosts_content(w.pod, w.ip, records, extra)
            volumes.write_in_place(w.hosts_file, content)
        # The same records for processes outside pods (e.g. the operator under test), see
        # LocalCluster.with_cluster_dns.
        host_view = volumes.cluster_hosts(records, services.hosts_lines(clients, None))
        volumes.write_in_place(self.run_dir / "cluster-hosts", host_view)

    def shutdown(self) -> None:
        """Stop all pod processes (and any recorded leftovers of a crashed earlier run)."""
        for worker in self.workers.values():
            worker.signal_all(signal.SIGTERM)
        for worker in self.workers.values():
            worker.kill_now()
        self.workers.clear()
        reap_leftovers(self.run_dir)
        if self._logs is not None:
            self._logs.stop()
        self.executor.shutdown(wait=False, cancel_futures=True)


def reap_leftovers(run_dir: Path) -> None:
    """Kill container process groups recorded in `<run_dir>/pids` (kubelet died uncleanly)."""
    pid_dir = run_dir / "pids"
    for pid in runtime.recorded_pids(pid_dir):
        procs.kill_group(pid, grace=2.0)
        runtime.forget_pid(pid_dir, pid)
    runtime.remove_mount_points(run_dir / "mount-points")
