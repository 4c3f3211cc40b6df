"""`python -m kvharness.kubelet --kubeconfig K --run-dir D`: run the process kubelet until SIGTERM.

A separate process (not a thread of the test run) so that it is stopped, and stops its pods,
the same way under pytest and under `e2e/cluster up`.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path

from kvharness import netplan
from kvharness.kube import Kube, KubeConfig
from kvharness.kubelet.kubelet import KubeletConfig, ProcessKubelet


def main() -> None:
    parser = argparse.ArgumentParser(prog="kvharness.kubelet")
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--node-name", default="ringkv-e2e-node")
    parser.add_argument("--version", default="v1.33.0")
    parser.add_argument("--slot", type=int, default=0, help="cluster slot (addresses, netplan)")
    parser.add_argument("--api-port", type=int, default=netplan.APISERVER_PORT)
    parser.add_argument("--image-map", type=Path, help="JSON image map (kubelet/images.py)")
    parser.add_argument("--tls-cert", type=Path, help="serving cert for kubectl logs")
    parser.add_argument("--tls-key", type=Path)
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    config = KubeletConfig(
        run_dir=args.run_dir,
        node_name=args.node_name,
        version=args.version,
        slot=netplan.Slot(args.slot),
        api_port=args.api_port,
        image_map=args.image_map,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
    )
    ProcessKubelet(Kube(KubeConfig.load(args.kubeconfig)), config).run(stop)


if __name__ == "__main__":
    main()
