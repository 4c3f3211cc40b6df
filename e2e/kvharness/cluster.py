"""A whole local cluster: control plane + one process kubelet, plus `kubectl` helpers.

Shared by the pytest fixtures (e2e/conftest.py) and the `e2e/cluster up|down|status` command.
The kubelet runs as a child process (`python -m kvharness.kubelet`) recorded in the same
state file as the control plane, so either caller can stop everything by process group.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kvharness import controlplane, netplan, procs
from kvharness import pki as pki_mod
from kvharness.kubelet.kubelet import reap_leftovers

log = logging.getLogger(__name__)
HARNESS_ROOT = Path(__file__).resolve().parent.parent  # e2e/, so `kvharness` is importable
NODE_NAME = "ringkv-e2e-node"
IMAGE_MAP = HARNESS_ROOT / "images.json"


def write_image_map(path: Path, *, root: str, pythonpath: str | None) -> Path:
    """Instantiate e2e/images.json for this machine: `{root}` becomes the installation that
    plays the image (by default the virtualenv running the harness, where `./dev` installed
    the project with its console scripts). ``pythonpath`` (the snapshot of the code under test,
    see snapshot_image_code) goes on the containers' PYTHONPATH, so the "image" runs that code."""
    doc = json.loads(IMAGE_MAP.read_text().replace("{root}", root))
    # The harness's own directory (e2e/cluster puts it there) is no part of the image.
    parts = [p for p in (pythonpath or "").split(":") if p and Path(p) != HARNESS_ROOT]
    pythonpath = ":".join(parts)
    if pythonpath:
        for entry in doc["images"]:
            entry.setdefault("env", {})["PYTHONPATH"] = pythonpath
    path.write_text(json.dumps(doc, indent=1))
    return path


def snapshot_image_code(cache: Path) -> Path:
    """Copy the code the harness imports (``kvnode``, ``kvoperator``: a developer's worktree or
    the checkout) into ``<cache>/e2e-image/<content hash>/`` and return that directory, which the
    image map puts on the containers' PYTHONPATH.

    Why a copy: the checkout may live anywhere, including under /tmp, and a pod that mounts a
    volume over a path that contains it (the operator's chart mounts an emptyDir at /tmp) would no
    longer see its own program. In a real image the code lives in the image (/opt/ringkv), never
    under a pod's mounts; the cache directory plays that part. Keyed by content, so parallel
    runs of different code never share a copy and a re-run reuses it."""
    import kvnode
    import kvoperator

    packages = [Path(m.__file__).resolve().parent for m in (kvnode, kvoperator)]
    files = sorted(
        (pkg.name, f.relative_to(pkg))
        for pkg in packages
        for f in pkg.rglob("*")
        if f.is_file() and "__pycache__" not in f.parts
    )
    by_name = {pkg.name: pkg for pkg in packages}
    digest = hashlib.sha256()
    for name, rel in files:
        digest.update(f"{name}/{rel}\0".encode())
        digest.update((by_name[name] / rel).read_bytes())
    dest = cache / "e2e-image" / digest.hexdigest()[:16]
    if not dest.is_dir():
        tmp = dest.with_name(f"{dest.name}.tmp.{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        for pkg in packages:
            shutil.copytree(pkg, tmp / pkg.name, ignore=shutil.ignore_patterns("__pycache__"))
        try:
            tmp.rename(dest)
        except OSError:  # another run made the same copy first
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


class LocalCluster:
    """Start/stop the cluster in `run_dir`; `kubectl` runs the real kubectl against it."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.plane = controlplane.ControlPlane(run_dir)
        self.kubeconfig = self.plane.kubeconfig
        self._slot_fd: int | None = None
        # The installation that plays the ringkv image (see write_image_map).
        self.image_root = os.environ.get("RINGKV_E2E_IMAGE_ROOT", sys.prefix)

    @property
    def host_ip(self) -> str:
        """The address of the control plane and the node (see netplan)."""
        return self.plane.host

    def start(self, *, timeout: float = 90.0) -> float:
        """Take a free slot, start everything; returns the seconds until the node is Ready."""
        t0 = time.monotonic()
        slot, self._slot_fd = netplan.acquire()
        log.info("cluster slot %d: host %s, pods from %s", slot.index, slot.host_ip, slot.pod_ip(0))
        try:
            self.plane.start(slot, timeout=timeout)
            self._start_kubelet()
            procs.wait_until(
                self._node_ready, timeout=timeout, what=f"node {NODE_NAME} Ready",
                on_timeout=self.dump_logs,
            )  # fmt: skip
        except BaseException:
            self.stop()
            raise
        return time.monotonic() - t0

    def _start_kubelet(self) -> None:
        version = (HARNESS_ROOT / "k8sbin" / "K8S_VERSION").read_text().strip()
        env = {**os.environ, "PYTHONPATH": str(HARNESS_ROOT), "PYTHONUNBUFFERED": "1"}
        pki = pki_mod.Pki(self.run_dir / "pki")
        cache = Path(os.environ.get("RINGKV_CACHE", Path.home() / ".cache" / "ringkv"))
        image_map = write_image_map(
            self.run_dir / "images.json",
            root=self.image_root,
            pythonpath=str(snapshot_image_code(cache)),
        )
        assert self._slot_fd is not None
        child = procs.start(
            "kubelet",
            [
                sys.executable, "-m", "kvharness.kubelet", "--kubeconfig", str(self.kubeconfig),
                "--run-dir", str(self.run_dir), "--node-name", NODE_NAME, "--version", version,
                "--tls-cert", str(pki.kubelet_crt), "--tls-key", str(pki.kubelet_key),
                "--slot", str(self.plane.slot.index), "--image-map", str(image_map),
            ],
            log_path=self.run_dir / "logs" / "kubelet.log",
            env=env,
            pass_fds=[self._slot_fd],  # the kubelet holds the slot for the cluster's lifetime
        )  # fmt: skip
        self.plane.children.append(child)
        self.plane.state.pids["kubelet"] = child.pid
        self.plane.state.save()

    def _node_ready(self) -> bool:
        for child in self.plane.children:
            if not child.alive():
                raise procs.Fatal(f"{child.name} exited: {procs.tail(child.log_path, 5)}")
        node = self.kubectl_json("get", "node", NODE_NAME, check=False)
        conds = (node or {}).get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)

    def assert_healthy(self) -> None:
        """Fail (with the dead component's log tail) if any cluster process has exited."""
        dead = [c for c in self.plane.children if not c.alive()]
        if dead:
            self.dump_logs()
            names = ", ".join(c.name for c in dead)
            raise AssertionError(f"cluster process(es) died: {names}; logs in {self.run_dir}")

    def stop(self) -> None:
        """Stop kubelet (which stops its pods), KCM, apiserver, etcd; reap any leftover pods."""
        state = controlplane.State.load(self.run_dir)
        pids = state.pids if state else self.plane.state.pids
        controlplane.stop_pids(pids)
        reap_leftovers(self.run_dir)
        if self._slot_fd is not None:
            os.close(self._slot_fd)
            self._slot_fd = None

    def with_cluster_dns(self, argv: Sequence[str]) -> list[str]:
        """Wrap `argv` so it runs in a private mount namespace whose /etc/hosts resolves the
        headless-Service names of pods, e.g. to run the operator under test as a process.

        The hosts file is maintained by the kubelet (rewritten in place, so the bind mount
        follows it); start the result with `procs.start` or `subprocess.run`.
        """
        hosts = self.run_dir / "cluster-hosts"
        procs.wait_until(hosts.exists, timeout=30, what=f"{hosts} written by the kubelet")
        script = 'mount --bind "$0" /etc/hosts && exec "$@"'
        return ["unshare", "--mount", "--propagation", "private", "--",
                "sh", "-c", script, str(hosts), *argv]  # fmt: skip

    # ---- kubectl ----------------------------------------------------------------------
    def kubectl(
        self, *args: str, check: bool = True, timeout: float = 60.0, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the real kubectl against this cluster; failures raise with its stderr."""
        argv = ["kubectl", f"--kubeconfig={self.kubeconfig}", *args]
        done = subprocess.run(
            argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
        )
        log.info("$ %s -> %d", " ".join(args), done.returncode)
        if check and done.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({done.returncode}):\n{done.stderr}{done.stdout}"
            )
        return done

    def kubectl_json(self, *args: str, check: bool = True) -> Any:
        done = self.kubectl(*args, "-o", "json", check=check)
        return json.loads(done.stdout) if done.returncode == 0 else None

    def dump_logs(self, lines: int = 80) -> None:
        """Log the tails of control-plane, kubelet and pod logs (called when something fails)."""
        log.error("cluster run directory (logs, volumes): %s", self.run_dir)
        self.plane.dump_logs(lines)
        for path in sorted((self.run_dir / "logs" / "pods").glob("*.log")):
            log.error("==== pod log %s ====\n%s", path.name, procs.tail(path, 30))
        pods = self.kubectl("get", "pods,pvc,pv,sts", "-A", "-o", "wide", check=False)
        log.error("==== cluster objects ====\n%s%s", pods.stdout, pods.stderr)
