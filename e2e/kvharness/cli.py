"""`e2e/cluster up|down|status`: a long-lived local cluster for poking at with kubectl.

`up` starts etcd, kube-apiserver, kube-controller-manager and the process kubelet as detached
process groups (they outlive this command), records them in `<run dir>/state.json` and prints
the KUBECONFIG to use; `down` stops them by process group and deletes the cluster's data (logs
are kept); `status` shows which processes are alive and what the API reports. CLI output is
printed; the library code underneath logs.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
from pathlib import Path

from kvharness import controlplane, procs
from kvharness.cluster import LocalCluster
from kvharness.kubelet.kubelet import reap_leftovers


def default_run_dir() -> Path:
    cache = Path(os.environ.get("RINGKV_CACHE", Path.home() / ".cache" / "ringkv"))
    return Path(os.environ.get("RINGKV_E2E_RUN_DIR", cache / "e2e-cluster"))


def alive(state: controlplane.State) -> dict[str, bool]:
    return {name: procs.group_alive(pid) for name, pid in state.pids.items()}


def up(run_dir: Path) -> int:
    state = controlplane.State.load(run_dir)
    if state is not None and any(alive(state).values()):
        print(f"already running (see `e2e/cluster status`)\nexport KUBECONFIG={state.kubeconfig}")
        return 0
    if state is not None:  # a stale cluster (crashed or killed): start from scratch
        reap_leftovers(run_dir)
        _clean(run_dir)
    if not (controlplane.k8s_bin_dir() / "kube-apiserver").exists():
        print("Kubernetes binaries missing: run e2e/setup.sh first", file=sys.stderr)
        return 1
    cluster = LocalCluster(run_dir)
    seconds = cluster.start()
    print(f"cluster up in {seconds:.1f}s; logs in {run_dir / 'logs'}")
    print(f"export KUBECONFIG={cluster.kubeconfig}")
    print("kubectl get nodes   # pods run as local processes on 127.0.x.y")
    return 0


def down(run_dir: Path) -> int:
    state = controlplane.State.load(run_dir)
    if state is None:
        print(f"no cluster state in {run_dir}")
        return 0
    controlplane.stop_pids(state.pids)
    reap_leftovers(run_dir)
    _clean(run_dir)
    print(f"cluster stopped; logs kept in {run_dir / 'logs'}")
    return 0


def _clean(run_dir: Path) -> None:
    """Delete a stopped cluster's data (etcd, pki, volumes) but keep its logs."""
    for child in run_dir.iterdir():
        if child.name != "logs":
            shutil.rmtree(child) if child.is_dir() else child.unlink()


def status(run_dir: Path) -> int:
    state = controlplane.State.load(run_dir)
    if state is None:
        print(f"no cluster in {run_dir}")
        return 1
    running = alive(state)
    for name, ok in running.items():
        print(f"{name:26} pid {state.pids[name]:>7}  {'running' if ok else 'DEAD'}")
    print(f"export KUBECONFIG={state.kubeconfig}")
    if running.get("kube-apiserver"):
        done = LocalCluster(run_dir).kubectl("get", "nodes,pods", "-A", "-o", "wide", check=False)
        print(done.stdout + done.stderr, end="")
    return 0 if all(running.values()) else 1


def main() -> None:
    parser = argparse.ArgumentParser(prog="e2e/cluster", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--run-dir", type=Path, default=default_run_dir())
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    commands = {"up": up, "down": down, "status": status}
    sys.exit(commands[args.command](args.run_dir))


if __name__ == "__main__":
    main()
