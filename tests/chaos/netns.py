"""One network namespace per node, so a test can cut a node off and heal it.

Why: on one loopback, every node of a local cluster shares an address and the kernel picks
127.0.0.1 as the source of every connection, so no filter can tell which node sent a packet
(and half the Raft connections are made from ephemeral ports). With a namespace per node, each
node has its own address on its own veth, and dropping everything on both ends of that veth
(a zero-length tc ``pfifo``) is a real, silent partition: packets vanish, nothing is refused,
exactly what a cut cable does.

The layout (all inside the chaos runner's own network namespace, see ``tests.chaos.sandbox``,
so nothing here touches the machine's network and it all disappears with the runner):

    runner netns:  lo 127.0.0.1/32, bridge ckbr 127.200.0.254/24 (the clients' address)
    node i netns:  lo 127.0.0.1/32, eth0 127.200.0.(i+1)/24, veth peer ck<i> on ckbr

Addresses stay in the loopback range (``route_localnet=1`` lets 127/8 cross a veth; lo keeps
only 127.0.0.1 so the rest of 127/8 is routed, not local). Each node namespace is held by a
``sleep`` process (a namespace lives while a process is in it), so nodes can be killed and
restarted into the same namespace with ``nsenter --net``.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

BRIDGE = "ckbr"
PREFIX = "127.200.0"
HUB_ADDRESS = f"{PREFIX}.254"
HOLD_SECONDS = 24 * 3600  # the holder's life is bounded anyway by the runner's pid namespace


def node_address(i: int) -> str:
    return f"{PREFIX}.{i + 1}"


def run(*argv: str, netns_pid: int | None = None) -> None:
    """Run one ``ip``/``tc``/``sysctl`` command (in a node's namespace if given); raise with
    its stderr on failure."""
    cmd = list(argv)
    if netns_pid is not None:
        cmd = ["nsenter", f"--net=/proc/{netns_pid}/ns/net", "--", *cmd]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()}")


def _loopback_only_localhost(netns_pid: int | None = None) -> None:
    run("ip", "link", "set", "lo", "up", netns_pid=netns_pid)
    run("ip", "addr", "flush", "dev", "lo", netns_pid=netns_pid)
    run("ip", "addr", "add", "127.0.0.1/32", "dev", "lo", netns_pid=netns_pid)
    for scope in ("all", "default"):
        run("sysctl", "-qw", f"net.ipv4.conf.{scope}.route_localnet=1", netns_pid=netns_pid)


@dataclass
class Fabric:
    """The bridge and the node namespaces; ``close`` (idempotent) removes them."""

    nodes: int
    holders: list[subprocess.Popen[bytes]] = field(default_factory=list)
    cut: set[int] = field(default_factory=set)

    @property
    def hosts(self) -> tuple[str, ...]:
        return tuple(node_address(i) for i in range(self.nodes))

    def open(self) -> Fabric:
        _loopback_only_localhost()
        run("ip", "link", "add", BRIDGE, "type", "bridge")
        run("ip", "addr", "add", f"{HUB_ADDRESS}/24", "dev", BRIDGE)
        run("ip", "link", "set", BRIDGE, "up")
        for i in range(self.nodes):
            self._add_node(i)
        return self

    def _add_node(self, i: int) -> None:
        holder = subprocess.Popen(
            ["unshare", "--net", "--", "sleep", str(HOLD_SECONDS)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        self.holders.append(holder)
        _wait_own_netns(holder.pid)
        run(
            "ip",
            "link",
            "add",
            f"ck{i}",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            str(holder.pid),
        )
        run("ip", "link", "set", f"ck{i}", "master", BRIDGE, "up")
        _loopback_only_localhost(holder.pid)
        run("ip", "addr", "add", f"{node_address(i)}/24", "dev", "eth0", netns_pid=holder.pid)
        run("ip", "link", "set", "eth0", "up", netns_pid=holder.pid)

    def enter(self, i: int) -> list[str]:
        """The argv prefix that runs a command in node ``i``'s namespace."""
        return ["nsenter", f"--net=/proc/{self.holders[i].pid}/ns/net", "--"]

    def isolate(self, i: int) -> None:
        """Drop every packet to and from node ``i`` (clients' included): a ``pfifo`` of
        length 0 (which also turns off the empty-queue bypass) on both ends of its veth, as
        root qdisc of the sending side — towards the node on ``ck<i>``, from it on its
        ``eth0``. (This kernel has no tc action modules, so no ``matchall action drop``.)"""
        holder = self.holders[i].pid
        run("tc", "qdisc", "add", "dev", f"ck{i}", "root", "pfifo", "limit", "0")
        run("tc", "qdisc", "add", "dev", "eth0", "root", "pfifo", "limit", "0", netns_pid=holder)
        self.cut.add(i)
        log.info("isolated node-%d", i)

    def heal(self, i: int) -> None:
        if i in self.cut:
            run("tc", "qdisc", "del", "dev", f"ck{i}", "root")
            run("tc", "qdisc", "del", "dev", "eth0", "root", netns_pid=self.holders[i].pid)
            self.cut.discard(i)
            log.info("healed node-%d", i)

    def close(self) -> None:
        for i in list(self.cut):
            self.heal(i)
        for i in range(len(self.holders)):
            # deleting one end deletes the pair now (a dying namespace frees it only later)
            subprocess.run(["ip", "link", "del", f"ck{i}"], capture_output=True, check=False)
        for holder in self.holders:
            holder.kill()
            holder.wait(timeout=10)
        self.holders.clear()
        subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True, check=False)


def _wait_own_netns(pid: int, *, timeout: float = 5.0) -> None:
    """Wait until ``unshare`` has moved ``pid`` into its new namespace (right after the fork
    it still shares ours, and a veth moved there would land in the wrong place)."""
    deadline = time.monotonic() + timeout
    mine = os.readlink("/proc/self/ns/net")
    while time.monotonic() < deadline:
        if os.readlink(f"/proc/{pid}/ns/net") != mine:
            return
        time.sleep(0.01)
    raise TimeoutError(f"namespace holder {pid} did not enter its own network namespace")
