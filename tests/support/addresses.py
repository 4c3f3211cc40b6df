"""A loopback address of its own for every test (and benchmark) cluster.

Why one address per cluster with fixed ports: every node of a cluster listens on the cluster's
address ``127.A.B.C`` with the standard layout of ``kvnode.localconf`` (HTTP 7000+i, Raft
17000+1000i+p), the same as ``./dev up`` on 127.0.0.1. The ports are fixed and below the
ephemeral range (32768-60999), so no outgoing socket or TIME-WAIT entry can ever hold them; the
address is what separates clusters, so two clusters (parallel pytest processes, repeated runs in
one process, a benchmark, ``./dev up``) never share a port. One address per cluster (rather than
one per node) keeps a single claim per cluster, lets scale tests add nodes 3..9 without reserving
anything, and runs the exact layout users run.

Never ``127.0.x.x``: the e2e process kubelet gives pods ``127.0.{1+i//254}.{1+i%254}`` and
``./dev up`` uses 127.0.0.1. Test addresses are ``127.A.B.C`` with ``A`` in [100, 199].

Allocation: ``A.B`` comes from the pid (parallel processes start in different blocks), ``C``
from a per-process counter (repeated clusters in one process get fresh addresses). An address is
claimed only if (1) an exclusive ``flock`` on ``<tmp>/ringkv-test-addresses/<address>.lock``
succeeds — two processes can never both hold it, and the lock dies with its holder — and
(2) every port of the layout binds on it right now (nothing else, such as a leaked node or an
unrelated listener, holds one). Both checks happen for every candidate, bounded.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import socket
import tempfile
from dataclasses import dataclass, field

from kvnode import localconf

FIRST_A = 100
A_VALUES = 100
PER_OCTET = 254  # 1..254
MAX_ATTEMPTS = 2000
EPHEMERAL_FIRST = 32768
_counter = itertools.count()


def candidate(pid: int, n: int) -> str:
    """The ``n``-th address process ``pid`` tries: block ``A.B`` from the pid (advancing one
    block per 254 attempts), host ``C`` from ``n``. Never 127.0.x.x, never .0 or .255."""
    blocks = A_VALUES * PER_OCTET
    block = (pid + n // PER_OCTET) % blocks
    a = FIRST_A + block // PER_OCTET
    b = 1 + block % PER_OCTET
    c = 1 + n % PER_OCTET
    return f"127.{a}.{b}.{c}"


def layout_ports(*, nodes: int, partitions: int, base_port: int) -> list[int]:
    """Every port the layout of ``kvnode.localconf`` gives ``nodes`` nodes."""
    ports = []
    for i in range(nodes):
        info = localconf.node_info(i, host="-", base_port=base_port)
        ports.append(info.http_port)
        ports += [info.raft_port_base + p for p in range(partitions)]
    return ports


def unbindable(host: str, ports: list[int]) -> int | None:
    """The first of ``ports`` that cannot be bound on ``host`` now (None if all can), with
    SO_REUSEADDR like the real listeners (a TIME-WAIT entry is no conflict for them)."""
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError:
                return port
    return None


@dataclass
class Claim:
    """An address held by this process until ``release`` (or this process's death)."""

    host: str
    base_port: int
    _lock: int | None = field(default=None, repr=False)

    def release(self) -> None:
        if self._lock is not None:
            with contextlib.suppress(OSError):
                os.close(self._lock)
            self._lock = None


def lock_dir() -> str:
    path = os.path.join(tempfile.gettempdir(), "ringkv-test-addresses")
    os.makedirs(path, exist_ok=True)
    return path


def _try_lock(host: str) -> int | None:
    fd = os.open(os.path.join(lock_dir(), f"{host}.lock"), os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def claim_address(
    *,
    nodes: int = localconf.MAX_NODES,
    partitions: int,
    base_port: int = localconf.DEFAULT_BASE_PORT,
    pid: int | None = None,
) -> Claim:
    """Claim a fresh loopback address whose ports for ``nodes`` nodes and ``partitions``
    partitions are all free (default: room for the largest local cluster, 10 nodes)."""
    problem = localconf.layout_problem(base_port=base_port, nodes=nodes, partitions=partitions)
    if problem:
        raise ValueError(problem)
    ports = layout_ports(nodes=nodes, partitions=partitions, base_port=base_port)
    return claim_ports(ports, base_port=base_port, pid=pid)


def claim_ports(ports: list[int], *, base_port: int = 0, pid: int | None = None) -> Claim:
    """Claim a fresh loopback address on which every one of ``ports`` binds now (for clusters
    that do not use the localconf layout, such as in-process Raft trios)."""
    if any(not 0 < port < EPHEMERAL_FIRST for port in ports):
        raise ValueError(f"test ports must be below the ephemeral range {EPHEMERAL_FIRST}")
    pid = os.getpid() if pid is None else pid
    busy: list[str] = []
    for _ in range(MAX_ATTEMPTS):
        host = candidate(pid, next(_counter))
        fd = _try_lock(host)
        if fd is None:
            continue
        taken = unbindable(host, ports)
        if taken is None:
            return Claim(host=host, base_port=base_port, _lock=fd)
        os.close(fd)
        busy.append(f"{host}:{taken}")
    raise RuntimeError(
        f"no free loopback address for a test cluster in {MAX_ATTEMPTS} attempts; "
        f"addresses with a taken port (first 10): {busy[:10]} — a wildcard listener "
        "(0.0.0.0) on one of these ports blocks every address"
    )
