"""The faults the nemesis injects, on a local cluster whose nodes each have a network namespace.

Each fault has an inverse (kill/restart, SIGSTOP/SIGCONT, isolate/heal, fill/free the disk),
and ``heal_all`` undoes whatever is still in force, so a run always ends on a whole cluster
before its final reads — and teardown undoes it again, whatever happened.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from typing import Any

from kvnode import localprocs
from kvnode.client import NodeHttp
from kvnode.core import errors
from kvnode.local import LocalCluster

from tests.chaos.netns import Fabric

log = logging.getLogger(__name__)

FILLER = "chaos-disk-filler"
CHUNK = b"\0" * (1 << 20)


class ChaosCluster(LocalCluster):
    """A LocalCluster whose node ``i`` runs inside the fabric's namespace ``i``."""

    fabric: Fabric

    def node_command(self, node_id: str) -> list[str]:
        index = int(node_id.rsplit("-", 1)[1])
        return [*self.fabric.enter(index), *super().node_command(node_id)]


class Disk:
    """A small tmpfs mounted on one node's data directory, so it can be filled up. The mount
    lives in the runner's private mount namespace: gone with it, and ``close`` unmounts."""

    def __init__(self, path: str, *, size_mb: int) -> None:
        self.path = path
        os.makedirs(path, exist_ok=True)
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", path],
            check=True,
            capture_output=True,
            timeout=20,
        )
        self.mounted = True

    def fill(self) -> int:
        """Write zeros until the filesystem refuses (ENOSPC); the bytes written."""
        written = 0
        with open(os.path.join(self.path, FILLER), "ab") as f:
            try:
                while True:
                    f.write(CHUNK)
                    f.flush()
                    written += len(CHUNK)
            except OSError:
                pass
        return written

    def free(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self.path, FILLER))

    def close(self) -> None:
        self.free()
        if self.mounted:
            subprocess.run(["umount", "-l", self.path], capture_output=True, timeout=20)
            self.mounted = False


class Faults:
    """Fault primitives over one cluster; what is in force is tracked so it can be undone."""

    def __init__(self, cluster: ChaosCluster, disk: Disk | None) -> None:
        self.cluster = cluster
        self.disk = disk
        self.paused: set[str] = set()
        self.killed: set[str] = set()
        # nodes found dead that the nemesis did not kill, or alive with a dead Raft ticker
        self.crashed: list[str] = []

    # -- who leads ---------------------------------------------------------------------------
    async def leaders(self) -> dict[int, str]:
        """Partition -> leader, as the first reachable, healthy node says (may be empty)."""
        http = NodeHttp()
        try:
            for node_id in self.live_nodes():
                if node_id in self.paused or self._index(node_id) in self.cluster.fabric.cut:
                    continue
                url = self.cluster.pmap.node(node_id).http_url
                try:
                    _, info, _ = await http.call(url, "GET", "/v1/cluster", timeout=2.0)
                except (errors.KvError, OSError):
                    continue
                return {int(p): str(n) for p, n in info["leaders"].items() if n}
        finally:
            await http.close()
        return {}

    def live_nodes(self) -> list[str]:
        return [n for n in self.cluster.node_ids if n not in self.killed]

    @staticmethod
    def _index(node_id: str) -> int:
        return int(node_id.rsplit("-", 1)[1])

    # -- primitives --------------------------------------------------------------------------
    def kill(self, node_id: str) -> None:
        self.resume(node_id)
        self.cluster.kill_node(node_id)
        self.killed.add(node_id)

    def restart(self, node_id: str) -> None:
        self.killed.discard(node_id)
        self.cluster.start_node(node_id)

    def pause(self, node_id: str) -> None:
        pid = self.cluster.pid(node_id)
        if pid is not None:
            localprocs.signal_group(pid, signal.SIGSTOP)
            self.paused.add(node_id)

    def resume(self, node_id: str) -> None:
        if node_id in self.paused:
            pid = self.cluster.pid(node_id)
            if pid is not None:
                localprocs.signal_group(pid, signal.SIGCONT)
            self.paused.discard(node_id)

    def isolate(self, node_id: str) -> None:
        self.cluster.fabric.isolate(self._index(node_id))

    def heal(self, node_id: str) -> None:
        self.cluster.fabric.heal(self._index(node_id))

    def fill_disk(self) -> int:
        assert self.disk is not None
        return self.disk.fill()

    def free_disk(self) -> None:
        if self.disk is not None:
            self.disk.free()

    def heal_all(self) -> None:
        """Undo every fault in force and restart every node of the map that is not running
        (noting the ones that died without being killed: crashes are findings)."""
        self.free_disk()
        for node_id in list(self.paused):
            self.resume(node_id)
        for i in list(self.cluster.fabric.cut):
            self.cluster.fabric.heal(i)
        for node_id in self.cluster.node_ids:
            if not self.cluster.is_running(node_id):
                if node_id not in self.killed:
                    self.crashed.append(f"{node_id} exited")
                    log.warning("%s died on its own:\n%s", node_id, self.cluster.log_tail(node_id))
                self.restart(node_id)
            elif (why := self.unhealthy(node_id)) is not None:
                # What a liveness probe does on Kubernetes: /healthz 503 -> restart. A storage
                # failure now fail-stops the node (exit 70, noted above as "exited"), so this
                # models the probe for what still needs it: a stalled (hung) ticker.
                self.crashed.append(f"{node_id} {why}")
                log.warning("%s failed /healthz (%s): restarting it", node_id, why)
                self.cluster.kill_node(node_id)
                self.restart(node_id)
        self.killed.clear()

    def unhealthy(self, node_id: str) -> str | None:
        """The reason ``/healthz`` gives for a dead or stalled Raft ticker (None: healthy, or
        no answer, which is not a liveness verdict)."""
        url = self.cluster.pmap.node(node_id).http_url + "/healthz"
        try:
            with urllib.request.urlopen(url, timeout=2.0):
                return None
        except urllib.error.HTTPError as exc:
            if exc.code != 503:
                return None
            try:
                reason = json.loads(exc.read()).get("reason")
            except ValueError:
                return None
            return str(reason) if reason in ("ticker_dead", "ticker_stalled") else None
        except OSError:
            return None

    def snapshot(self) -> dict[str, Any]:
        return {
            "paused": sorted(self.paused),
            "killed": sorted(self.killed),
            "cut": sorted(self.cluster.fabric.cut),
            "at": time.monotonic(),
        }
