"""Addresses and ports of a local cluster: one loopback "slot" per running cluster.

Why not ports from the kernel (bind to port 0): those are ephemeral ports (32768-60999), which
the project forbids for listeners, and they race with every other test on the machine. Instead
each running cluster owns a slot `k`, taken with an exclusive `flock` on
`$RINGKV_CACHE/e2e-slots/<k>.lock` for as long as the cluster lives (the lock's open file is
inherited by the kubelet process, so `e2e/cluster up` keeps it after the CLI exits). Slot k has:

  * its own host address 127.0.0.{20+k}: etcd (2379/2380), kube-apiserver (6443) and the
    kubelet's log endpoint (10250) listen there on the standard, fixed ports, so two clusters
    (the lead's baseline, a helper's run, `e2e/cluster up`) can never collide, and nothing else
    on the machine uses these addresses (integration tests use 127.0.0.1 and other 127.x blocks);
  * its own pod block 127.0.{16+16k .. 31+16k}.{1..254}: 4064 pod IPs per cluster run, handed
    out once per pod uid (a re-created pod gets a new IP, as on a real cluster).
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

SLOTS = 14  # 16 + 16 * 14 = 240: the pod blocks stay inside 127.0.16.0 - 127.0.239.255
BLOCKS_PER_SLOT = 16
ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380
APISERVER_PORT = 6443
KUBELET_PORT = 10250


@dataclass(frozen=True, slots=True)
class Slot:
    """The addresses of cluster slot `index` (pure)."""

    index: int

    @property
    def host_ip(self) -> str:
        return f"127.0.0.{20 + self.index}"

    def pod_ip(self, n: int) -> str:
        """The n-th pod address of this slot (n counts pod uids, never reused in a run)."""
        per_block = 254
        if not 0 <= n < per_block * BLOCKS_PER_SLOT:
            raise ValueError(f"pod address {n} outside slot {self.index}'s block")
        third = 16 + BLOCKS_PER_SLOT * self.index + n // per_block
        return f"127.0.{third}.{1 + n % per_block}"


def slots_dir() -> Path:
    cache = Path(os.environ.get("RINGKV_CACHE", Path.home() / ".cache" / "ringkv"))
    return cache / "e2e-slots"


def acquire(directory: Path | None = None) -> tuple[Slot, int]:
    """Take the first free slot; returns it and the lock's file descriptor (keep it open).

    The lock is released when every process holding the descriptor has closed it or exited,
    so a crashed cluster never leaks its slot.
    """
    directory = directory or slots_dir()
    directory.mkdir(parents=True, exist_ok=True)
    for index in range(SLOTS):
        fd = os.open(directory / f"{index}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return Slot(index), fd
    raise RuntimeError(f"all {SLOTS} e2e cluster slots in {directory} are taken")
