"""etcd + kube-apiserver + kube-controller-manager as local processes on the slot's address.

This is a real control plane (the binaries are built from the Kubernetes release pinned in
e2e/k8sbin by e2e/build-k8s.sh); only the node side is replaced by the process kubelet. State
(pids, slot, kubeconfig) is written to `<run_dir>/state.json` so that `e2e/cluster down` in
another process can stop what `e2e/cluster up` started.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import ssl
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kvharness import netplan, procs
from kvharness import pki as pki_mod
from kvharness.kube import Kube, KubeConfig

log = logging.getLogger(__name__)

# Controllers the tests rely on (an explicit list disables all others, notably node-lifecycle,
# which would otherwise taint/evict the process node, and endpoints/endpointslice, which reject
# the loopback pod IPs used here).
# root-ca-cert-publisher writes the `kube-root-ca.crt` ConfigMap into every namespace, which the
# projected service-account volume of every pod mounts as ca.crt (in-cluster configuration).
CONTROLLERS = (
    "statefulset,garbagecollector,namespace,serviceaccount,root-ca-cert-publisher,"
    "pvc-protection,pv-protection,persistentvolume-binder,disruption,deployment,replicaset,job"
)
ETCD = os.environ.get("RINGKV_ETCD", "etcd")


@dataclass
class State:
    """What another process needs to find and stop a running cluster."""

    run_dir: str
    kubeconfig: str
    api_port: int
    slot: int = 0
    pids: dict[str, int] = field(default_factory=dict)

    def save(self) -> None:
        Path(self.run_dir, "state.json").write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, run_dir: Path) -> State | None:
        path = run_dir / "state.json"
        if not path.exists():
            return None
        return cls(**json.loads(path.read_text()))


def k8s_bin_dir() -> Path:
    """Where e2e/build-k8s.sh puts the binaries (same cache key: the pinned version)."""
    version = (Path(__file__).parent.parent / "k8sbin" / "K8S_VERSION").read_text().strip()
    cache = Path(os.environ.get("RINGKV_CACHE", Path.home() / ".cache" / "ringkv"))
    return cache / f"k8s-{version}" / "bin"


class ControlPlane:
    """Starts and stops the three control-plane processes; logs go to `<run_dir>/logs`."""

    def __init__(self, run_dir: Path, *, bin_dir: Path | None = None) -> None:
        self.run_dir = run_dir
        self.slot = netplan.Slot(0)  # replaced by start(); see netplan for why slots
        self.bin_dir = bin_dir or k8s_bin_dir()
        self.logs = run_dir / "logs"
        self.kubeconfig = run_dir / "admin.kubeconfig"
        self.children: list[procs.Child] = []
        self.state = State(str(run_dir), str(self.kubeconfig), api_port=netplan.APISERVER_PORT)

    @property
    def host(self) -> str:
        return self.slot.host_ip

    def start(self, slot: netplan.Slot, *, timeout: float = 90.0) -> None:
        """Start everything on `slot`'s address; return once the API is ready and the KCM is
        acting on it."""
        t0 = time.monotonic()
        self.slot = slot
        self.state.slot = slot.index
        self.run_dir.mkdir(parents=True, exist_ok=True)
        pki = pki_mod.create_pki(self.run_dir / "pki", host_ip=self.host)
        etcd_url = self._start_etcd()
        port = self.state.api_port
        pki_mod.write_kubeconfig(self.kubeconfig, server=f"https://{self.host}:{port}", pki=pki)
        self._start_apiserver(pki, etcd_url, port)
        self.state.save()
        procs.wait_until(
            self._readyz, timeout=timeout, what="kube-apiserver /readyz", on_timeout=self.dump_logs
        )
        t_api = time.monotonic() - t0
        self._start_kcm()
        self.state.save()
        # The serviceaccount controller creating default/default proves the KCM is running.
        kube = self.client()
        procs.wait_until(
            lambda: kube.get_or_none("/api/v1/namespaces/default/serviceaccounts/default"),
            timeout=timeout,
            what="kube-controller-manager to create the default ServiceAccount",
            on_timeout=self.dump_logs,
        )
        log.info("control plane ready: api %.1fs, total %.1fs", t_api, time.monotonic() - t0)

    def client(self) -> Kube:
        return Kube(KubeConfig.load(self.kubeconfig))

    def _spawn(self, name: str, argv: list[str]) -> procs.Child:
        child = procs.start(name, argv, log_path=self.logs / f"{name}.log")
        self.children.append(child)
        self.state.pids[name] = child.pid
        return child

    def _start_etcd(self) -> str:
        client = f"http://{self.host}:{netplan.ETCD_CLIENT_PORT}"
        peer = f"http://{self.host}:{netplan.ETCD_PEER_PORT}"
        self._spawn("etcd", [
            ETCD, "--name", "e2e", "--data-dir", str(self.run_dir / "etcd"),
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"e2e={peer}",
            "--unsafe-no-fsync", "--log-level", "warn",
        ])  # fmt: skip
        return client

    def _start_apiserver(self, pki: pki_mod.Pki, etcd_url: str, port: int) -> None:
        self._spawn("kube-apiserver", [
            str(self.bin_dir / "kube-apiserver"),
            f"--etcd-servers={etcd_url}", f"--bind-address={self.host}", f"--secure-port={port}",
            f"--advertise-address={self.host}", "--endpoint-reconciler-type=none",
            f"--tls-cert-file={pki.apiserver_crt}", f"--tls-private-key-file={pki.apiserver_key}",
            f"--client-ca-file={pki.ca_crt}",
            # kubectl logs: reach the process kubelet's log endpoint on its InternalIP, verified.
            f"--kubelet-certificate-authority={pki.ca_crt}",
            "--kubelet-preferred-address-types=InternalIP",
            f"--kubelet-client-certificate={pki.admin_crt}",
            f"--kubelet-client-key={pki.admin_key}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki.sa_pub}",
            f"--service-account-signing-key-file={pki.sa_key}",
            "--service-cluster-ip-range=10.0.0.0/24", "--authorization-mode=RBAC",
            # ServiceAccount admission (on by default) gives every pod its account and the
            # projected kube-api-access volume; the kubelet fills it through TokenRequest.
            "--allow-privileged=true",
            f"--cert-dir={self.run_dir / 'pki'}", "--profiling=false", "--v=1",
        ])  # fmt: skip

    def _start_kcm(self) -> None:
        self._spawn("kube-controller-manager", [
            str(self.bin_dir / "kube-controller-manager"),
            f"--kubeconfig={self.kubeconfig}", "--leader-elect=false",
            "--use-service-account-credentials=false", f"--controllers={CONTROLLERS}",
            f"--root-ca-file={self.run_dir / 'pki' / 'ca.crt'}",
            f"--bind-address={self.host}", "--secure-port=0", "--profiling=false", "--v=2",
        ])  # fmt: skip

    def _readyz(self) -> bool:
        cfg = KubeConfig.load(self.kubeconfig)
        ctx = ssl.create_default_context(cafile=cfg.ca_file)
        ctx.load_cert_chain(cfg.cert_file, cfg.key_file)
        for child in self.children:
            if not child.alive():
                raise procs.Fatal(f"{child.name} exited: {procs.tail(child.log_path, 5)}")
        url = f"https://{self.host}:{self.state.api_port}/readyz"
        with urllib.request.urlopen(url, context=ctx, timeout=2) as resp:
            return bool(resp.status == 200)

    def dump_logs(self, lines: int = 60) -> None:
        """Log the tail of every control-plane log (called on timeouts and test failures)."""
        for path in sorted(self.logs.glob("*.log")):
            log.error("==== %s (last %d lines) ====\n%s", path, lines, procs.tail(path, lines))

    def stop(self) -> None:
        """Stop children in reverse start order (KCM, apiserver, etcd)."""
        stop_pids(self.state.pids)
        self.children.clear()


def stop_pids(pids: dict[str, int], *, grace: float = 10.0) -> None:
    """Stop recorded process groups in reverse order; used by `stop` and `cluster down`."""
    for name, pid in reversed(list(pids.items())):
        log.info("stopping %s (pgid %d)", name, pid)
        procs.kill_group(pid, grace=grace, waiter=_waiter_for(pid))


def _waiter_for(pid: int) -> Callable[[float], None]:
    """Reap `pid` if it is our child (avoids zombies that look alive to kill(0))."""

    def wait(timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                return
            if done or time.monotonic() >= deadline:
                return
            time.sleep(0.05)

    return wait


def remove_run_dir(run_dir: Path) -> None:
    """Delete a stopped cluster's files (etcd data, pki, volumes, logs)."""
    shutil.rmtree(run_dir, ignore_errors=True)
