"""The embedded default: a ringkv cluster of local node processes on one machine.

``ringkv local up`` computes the initial placement with the same pure function the operator uses
(``kvnode.core.placement.place``), writes the partition map, starts one ``python -m kvnode``
process per node (own data directory; ports from ``kvnode.localconf``, all below the ephemeral
range), and waits — bounded — until every partition has a leader. ``LocalCluster`` is also what
the integration tests use to kill, stop and restart real nodes. Nodes run in their own session
and are recorded per state directory (``kvnode.localprocs``), so ``down`` and test teardown find
and stop every node of a state directory, including nodes started by a command that was killed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from kvnode import localauth, localconf, localprocs, localtls
from kvnode.client import NodeHttp
from kvnode.core import errors, files
from kvnode.core.model import NodeInfo, PartitionMap
from kvnode.core.placement import NodeSlot, place
from kvnode.localconf import MAX_PARTITIONS, node_info
from kvnode.rebalance import executor as rebalance
from kvnode.rebalance import state as rebalance_state
from kvnode.rebalance.http_admin import HttpNodeAdmin

log = logging.getLogger(__name__)

STATE_FILE = "cluster.json"
REBALANCE_FILE = "rebalance.json"
__all__ = ["MAX_PARTITIONS", "LocalCluster", "NodeExited", "node_info"]


class NodeExited(RuntimeError):
    """A node process this cluster started exited on its own (e.g. its port was taken); the
    message carries the end of its log, which says why."""


@dataclass(frozen=True, slots=True)
class LocalNode:
    info: NodeInfo
    data_dir: str
    log_path: str


def host_of(i: int, *, host: str, hosts: tuple[str, ...] = ()) -> str:
    """Node ``i``'s address: ``hosts[i]`` when the cluster gives each node its own (e.g. one
    network namespace per node, so a test can cut one node off), else the shared ``host``."""
    if not hosts:
        return host
    if i >= len(hosts):
        raise ValueError(f"node index {i} has no address: the cluster lists {len(hosts)} hosts")
    return hosts[i]


def initial_map(
    *,
    nodes: int,
    partitions: int,
    replication: int,
    host: str,
    base_port: int,
    hosts: tuple[str, ...] = (),
) -> PartitionMap:
    """The epoch-1 map of a fresh local cluster (deterministic)."""
    problem = localconf.layout_problem(base_port=base_port, nodes=nodes, partitions=partitions)
    if problem:
        raise ValueError(problem)
    if replication > nodes:
        raise ValueError(f"replication {replication} needs at least as many nodes, got {nodes}")
    infos = [
        node_info(i, host=host_of(i, host=host, hosts=hosts), base_port=base_port)
        for i in range(nodes)
    ]
    replicas = place(
        [NodeSlot(n.node_id, n.zone) for n in infos], partitions=partitions, replication=replication
    )
    return PartitionMap.build(epoch=1, nodes=infos, replicas=replicas, replication=replication)


class LocalCluster:
    """Node processes of one local cluster, described by ``<base_dir>/cluster.json``."""

    def __init__(
        self,
        base_dir: str,
        pmap: PartitionMap,
        *,
        env: dict[str, str] | None = None,
        hosts: tuple[str, ...] = (),
    ):
        self.base_dir = os.path.abspath(base_dir)
        self.pmap = pmap
        self.env = dict(env or {})
        self.hosts = tuple(hosts)  # per-node addresses (empty: every node on the same host)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        base_dir: str,
        *,
        nodes: int = 3,
        partitions: int = 16,
        replication: int = 3,
        host: str = localconf.DEFAULT_HOST,
        base_port: int = localconf.DEFAULT_BASE_PORT,
        env: dict[str, str] | None = None,
        hosts: tuple[str, ...] = (),
    ) -> LocalCluster:
        """``hosts``: one address per node index (room for nodes a later ``scale`` adds),
        instead of ``host`` for all."""
        pmap = initial_map(
            nodes=nodes,
            partitions=partitions,
            replication=replication,
            host=host,
            base_port=base_port,
            hosts=hosts,
        )
        os.makedirs(base_dir, exist_ok=True)
        cluster = cls(base_dir, pmap, env=env, hosts=hosts)
        cluster._write_json("map.json", pmap.to_dict())
        cluster._save_state()
        return cluster

    @classmethod
    def load(cls, base_dir: str) -> LocalCluster:
        path = os.path.join(base_dir, STATE_FILE)
        try:
            with open(path, encoding="utf-8") as f:
                state = json.load(f)
        except FileNotFoundError:
            raise FileNotFoundError(
                f"no local cluster in {os.path.abspath(base_dir)} (no {STATE_FILE}); "
                "start one with `ringkv local up`, or pass --dir / set "
                f"{localconf.STATE_DIR_ENV}"
            ) from None
        return cls(
            base_dir,
            PartitionMap.from_dict(state["map"]),
            env=state.get("env"),
            hosts=tuple(state.get("hosts", ())),
        )

    @property
    def base_port(self) -> int:
        first = self.pmap.nodes[0]
        return first.http_port - int(first.node_id.rsplit("-", 1)[1])

    @property
    def host(self) -> str:
        return self.pmap.nodes[0].host

    def http(self) -> NodeHttp:
        """A transport carrying the cluster credential when auth is on (``kvnode.localauth``):
        readiness probes, ``/v1/cluster`` and rebalancing are cluster-internal calls. With TLS
        on it calls the nodes over HTTPS, verified with the cluster's CA (``kvnode.localtls``)."""
        return NodeHttp(
            token=localauth.cluster_token(self.env), tls=localtls.client_context(self.env)
        )

    def new_node(self, i: int) -> NodeInfo:
        host = host_of(i, host=self.host, hosts=self.hosts)
        return node_info(i, host=host, base_port=self.base_port)

    async def seal_bootstrap(self) -> bool:
        """Move a cluster that serves on its epoch-1 map to an identical epoch-2 map (on every
        node, then in ``map.json``); False if it is past epoch 1 already.

        Why: a node whose volume is empty takes an epoch-1 map for a fresh bootstrap and opens
        its replicas empty as voters (``kvnode.service.identity``). Once the bootstrap is over
        that would be a lost volume rejoining with an empty log, which can lose acknowledged
        writes; from epoch 2 on, the same node reports needs-reseed instead. The operator closes
        the same gap its own way (it never installs a map on a bootstrapped member that lost
        it)."""
        if self.pmap.epoch != 1:
            return False
        base = self.pmap
        sealed = PartitionMap.build(
            epoch=2, nodes=base.nodes, replicas=base.replicas, replication=base.replication
        )
        http = self.http()
        try:
            admin = HttpNodeAdmin(http, timeout_s=15.0)
            for node in sealed.nodes:
                await admin.install_map(node, sealed)
        finally:
            await http.close()
        self.set_map(sealed)
        log.info("bootstrap sealed: the cluster is at epoch 2 (same placement)")
        return True

    def set_map(self, pmap: PartitionMap) -> None:
        """Record ``pmap`` as the cluster's map (what nodes read at start, and who exists)."""
        self.pmap = pmap
        self._write_json("map.json", pmap.to_dict())
        self._save_state()

    def _write_json(self, name: str, body: Any) -> None:
        files.write_json_atomic(os.path.join(self.base_dir, name), body, durable=False, indent=1)

    def _save_state(self) -> None:
        state: dict[str, Any] = {"map": self.pmap.to_dict(), "env": self.env}
        if self.hosts:
            state["hosts"] = list(self.hosts)
        self._write_json(STATE_FILE, state)

    def _legacy_pids(self) -> dict[str, int]:
        """Pids an older version kept inside ``cluster.json``."""
        try:
            with open(os.path.join(self.base_dir, STATE_FILE), encoding="utf-8") as f:
                return {k: int(v) for k, v in json.load(f).get("pids", {}).items()}
        except (OSError, ValueError):
            return {}

    def _recorded_pids(self) -> dict[str, int]:
        return self._legacy_pids() | localprocs.recorded_pids(self.base_dir)

    # -- nodes -------------------------------------------------------------------------------
    def node(self, node_id: str) -> LocalNode:
        info = self.pmap.node(node_id)
        return LocalNode(
            info=info,
            data_dir=self.data_dir(node_id),
            log_path=os.path.join(self.base_dir, f"{node_id}.log"),
        )

    def data_dir(self, node_id: str) -> str:
        return os.path.join(self.base_dir, node_id)

    @property
    def node_ids(self) -> list[str]:
        return [n.node_id for n in self.pmap.nodes]

    @property
    def endpoints(self) -> list[str]:
        """The nodes' URLs as clients call them (``https://`` when TLS is on)."""
        return [localtls.url(n.http_url, self.env) for n in self.pmap.nodes]

    @property
    def ca_file(self) -> str | None:
        """The CA bundle clients verify the nodes with (None: TLS off)."""
        return self.env.get(localtls.CA_ENV)

    def node_env(self, node_id: str) -> dict[str, str]:
        node = self.node(node_id)
        env = dict(os.environ)
        env.update(
            {
                "KVNODE_NODE_ID": node_id,
                localprocs.DATA_DIR_ENV: node.data_dir,
                "KVNODE_HOST": node.info.host,
                "KVNODE_BIND_HOST": node.info.host,
                "KVNODE_HTTP_PORT": str(node.info.http_port),
                "KVNODE_RAFT_PORT_BASE": str(node.info.raft_port_base),
                "KVNODE_MAP_FILE": os.path.join(self.base_dir, "map.json"),
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.env)
        env.update(localtls.node_env(self.env, node_id, host=node.info.host))
        return env

    def start_node(self, node_id: str) -> None:
        """Start ``node_id`` in its own session (it outlives this process, and a signal to our
        process group does not reach it) and record its pid at once."""
        if self.is_running(node_id):
            return
        node = self.node(node_id)
        os.makedirs(node.data_dir, exist_ok=True)
        with open(node.log_path, "ab") as logf:
            proc = subprocess.Popen(
                self.node_command(node_id),
                env=self.node_env(node_id),
                stdout=logf,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.procs[node_id] = proc
        localprocs.record_pid(self.base_dir, node_id, proc.pid)
        log.info("started %s (pid %d)", node_id, proc.pid)

    def node_command(self, node_id: str) -> list[str]:
        """The argv that runs ``node_id`` (a subclass may wrap it, e.g. to enter the node's
        own network namespace with ``nsenter``, which execs: the pid stays the node's)."""
        return [sys.executable, "-m", "kvnode"]

    def start_all(self) -> None:
        for node_id in self.node_ids:
            self.start_node(node_id)

    def pid(self, node_id: str) -> int | None:
        proc = self.procs.get(node_id)
        if proc is not None:
            return proc.pid if proc.poll() is None else None
        pid = self._recorded_pids().get(node_id)
        if pid is None or not localprocs.is_node_of(pid, self.data_dir(node_id)):
            return None
        return pid

    def is_running(self, node_id: str) -> bool:
        return self.pid(node_id) is not None

    def kill_node(self, node_id: str) -> None:
        """SIGKILL: the crash case (no shutdown code runs)."""
        self._signal_and_wait(node_id, signal.SIGKILL, timeout=10.0)

    def stop_node(self, node_id: str, *, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL if the node has not exited within ``timeout``."""
        try:
            self._signal_and_wait(node_id, signal.SIGTERM, timeout=timeout)
        except TimeoutError:
            log.warning("%s ignored SIGTERM for %.0fs; killing", node_id, timeout)
            self._signal_and_wait(node_id, signal.SIGKILL, timeout=10.0)

    def stop_all(self, *, kill: bool = False) -> None:
        for node_id in self.node_ids:
            if kill:
                self.kill_node(node_id)
            else:
                self.stop_node(node_id)

    def stray_processes(self) -> list[localprocs.ProcInfo]:
        """Every live node process of this state directory: recorded or not, in the current
        map or not (e.g. a joiner started by a ``scale`` that was killed). Found by three
        routes: processes this object started, the pid files, and a ``/proc`` scan."""
        found = {p.pid: p for p in localprocs.nodes_under(self.base_dir)}
        mine = [p.pid for p in self.procs.values() if p.poll() is None]
        recorded = [
            pid
            for nid, pid in self._recorded_pids().items()
            if localprocs.is_node_of(pid, self.data_dir(nid))
        ]
        for pid in [*mine, *recorded]:
            if pid not in found and localprocs.alive(pid):
                found[pid] = localprocs.info(pid)
        return sorted(found.values(), key=lambda p: p.pid)

    def kill_everything(self, *, timeout: float = 10.0) -> list[localprocs.ProcInfo]:
        """SIGKILL every node process of this state directory and its process group (test
        teardown: whatever the test did, and whoever started them). Returns what was killed;
        raises RuntimeError naming any process that survived."""
        found = self.stray_processes()
        survivors = localprocs.kill_all(found, timeout=timeout)
        for proc in self.procs.values():
            proc.poll()  # reap
        self.procs.clear()
        if survivors:
            raise RuntimeError(f"node processes of {self.base_dir} survived SIGKILL: {survivors}")
        return found

    def _signal_and_wait(self, node_id: str, sig: int, *, timeout: float) -> None:
        pid = self.pid(node_id)
        if pid is None:
            self.procs.pop(node_id, None)
            return
        localprocs.signal_group(pid, sig)
        if localprocs.wait_gone([pid], timeout=timeout):
            raise TimeoutError(f"{node_id} (pid {pid}) still running {timeout}s after signal {sig}")
        proc = self.procs.pop(node_id, None)
        if proc is not None:
            proc.poll()

    def log_tail(self, node_id: str, lines: int = 40) -> str:
        try:
            with open(self.node(node_id).log_path, encoding="utf-8", errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def logs_report(self, lines: int = 40) -> str:
        return "\n".join(
            f"===== {nid} (running={self.is_running(nid)}) =====\n{self.log_tail(nid, lines)}"
            for nid in self.node_ids
        )

    # -- readiness ---------------------------------------------------------------------------
    async def wait_ready(
        self, *, timeout: float = 60.0, nodes: list[str] | None = None
    ) -> dict[str, Any]:
        """Wait until the given (default: all running) nodes answer /readyz and every partition
        has a leader in ``/v1/cluster``; raise TimeoutError with the nodes' logs otherwise, and
        NodeExited at once if a node this object started exited on its own."""
        want = nodes or [n for n in self.node_ids if n in self.procs or self.is_running(n)]
        deadline = time.monotonic() + timeout
        last: Any = None
        http = self.http()
        try:
            while time.monotonic() < deadline:
                self._raise_if_exited(want)
                last = await self._probe(http, want)
                if last.get("ready"):
                    return dict(last["cluster"])
                await asyncio.sleep(0.2)
        finally:
            await http.close()
        raise TimeoutError(
            f"local cluster not ready within {timeout}s; last probe: {last}\n{self.logs_report()}"
        )

    def _raise_if_exited(self, node_ids: list[str]) -> None:
        for node_id in node_ids:
            proc = self.procs.get(node_id)
            if proc is None or proc.poll() is None:
                continue
            self.procs.pop(node_id)
            tail = self.log_tail(node_id, lines=15)
            errors_seen = [ln for ln in tail.splitlines() if " ERROR " in ln or "CRITICAL" in ln]
            why = errors_seen[-1] if errors_seen else "(no error line in its log)"
            raise NodeExited(
                f"{node_id} exited with status {proc.returncode} before it was ready: {why}\n"
                f"--- end of {self.node(node_id).log_path} ---\n{tail}"
            )

    async def _probe(self, http: NodeHttp, want: list[str]) -> dict[str, Any]:
        for node_id in want:
            if not self.is_running(node_id):
                return {"ready": False, "why": f"{node_id} is not running"}
            try:
                await http.call(self.pmap.node(node_id).http_url, "GET", "/readyz", timeout=1.0)
            except (errors.KvError, OSError) as exc:
                return {"ready": False, "why": f"{node_id} not ready: {exc}"}
        try:
            _, cluster, _ = await http.call(
                self.pmap.node(want[0]).http_url, "GET", "/v1/cluster", timeout=2.0
            )
        except (errors.KvError, OSError) as exc:
            return {"ready": False, "why": f"cluster info: {exc}"}
        missing = [p for p, leader in cluster["leaders"].items() if leader is None]
        if missing:
            return {"ready": False, "why": f"partitions without leader: {missing}"}
        return {"ready": True, "cluster": cluster}


async def node_views(cluster: LocalCluster) -> dict[str, dict[str, Any] | None]:
    """``/v1/cluster`` as each running node answers it right now (None: not running or no
    answer within 3 s)."""
    views: dict[str, dict[str, Any] | None] = {}
    http = cluster.http()
    try:
        for node_id in cluster.node_ids:
            views[node_id] = None
            if not cluster.is_running(node_id):
                continue
            try:
                _, info, _ = await http.call(
                    cluster.pmap.node(node_id).http_url, "GET", "/v1/cluster", timeout=3.0
                )
            except (errors.KvError, OSError):
                continue
            views[node_id] = dict(info)
    finally:
        await http.close()
    return views


async def live_map(cluster: LocalCluster) -> PartitionMap:
    """The newest map any running node has installed (``cluster.json`` may lag behind a
    rebalance that was interrupted); ``cluster.pmap`` when no node answers."""
    best = cluster.pmap
    for info in (await node_views(cluster)).values():
        if info is not None:
            found = PartitionMap.from_dict(info["map"])
            if found.epoch > best.epoch:
                best = found
    return best


def target_map(current: PartitionMap, cluster: LocalCluster, nodes: int) -> PartitionMap:
    """The balanced map over ``node-0 .. node-(nodes-1)`` that moves the fewest replicas."""
    problem = localconf.layout_problem(
        base_port=cluster.base_port, nodes=nodes, partitions=current.partitions
    )
    if problem:
        raise ValueError(problem)
    if nodes < current.replication:
        raise ValueError(
            f"cannot scale to {nodes} nodes with replication factor {current.replication}"
        )
    infos = [
        current.node(f"node-{i}") if current.has_node(f"node-{i}") else cluster.new_node(i)
        for i in range(nodes)
    ]
    replicas = place(
        [NodeSlot(n.node_id, n.zone) for n in infos],
        partitions=current.partitions,
        replication=current.replication,
        previous=current.replicas,
    )
    return PartitionMap.build(
        epoch=current.epoch, nodes=infos, replicas=replicas, replication=current.replication
    )


async def scale_cluster(
    cluster: LocalCluster,
    nodes: int | None,
    *,
    options: rebalance.Options | None = None,
    on_progress: rebalance.ProgressCallback | None = None,
    abort: bool = False,
    ready_timeout: float = 90.0,
) -> dict[str, Any]:
    """Scale the local cluster to ``nodes`` nodes: start the new ones, rebalance (resuming an
    interrupted rebalance), stop the drained ones. ``nodes=None`` resumes; ``abort`` stops an
    unfinished rebalance, leaving every partition healthy at its old or new replicas."""
    path = os.path.join(cluster.base_dir, REBALANCE_FILE)
    previous = rebalance_state.load(path)
    unfinished = previous is not None and not previous.status.finished
    http = cluster.http()
    admin = HttpNodeAdmin(http, timeout_s=15.0)
    try:
        if abort:
            if not unfinished:
                raise ValueError("there is no unfinished rebalance to abort")
            rb = rebalance.Rebalancer.load(path, admin=admin, options=options)
            final = await rb.abort("aborted by the user")
            return _finish_local(cluster, rb, final)
        if unfinished:
            assert previous is not None
            want = len(previous.target.nodes)
            if nodes is not None and nodes != want:
                raise ValueError(
                    f"a rebalance to {want} nodes is unfinished: run `scale {want}` to resume it "
                    "or `scale --abort` to stop it"
                )
            rb = rebalance.Rebalancer.load(
                path, admin=admin, options=options, on_progress=on_progress
            )
            current, target = previous.base, previous.target
        else:
            if nodes is None:
                raise ValueError("give the number of nodes to scale to")
            current = await live_map(cluster)
            target = target_map(current, cluster, nodes)
            if target.replicas == current.replicas and target.nodes == current.nodes:
                return {"nodes": nodes, "epoch": current.epoch, "moved_partitions": 0}
            rb = rebalance.Rebalancer.create(
                path, current, target, admin=admin, options=options, on_progress=on_progress
            )
        union = {n.node_id: n for n in current.nodes} | {n.node_id: n for n in target.nodes}
        cluster.set_map(
            PartitionMap.build(
                epoch=current.epoch,
                nodes=list(union.values()),
                replicas=current.replicas,
                replication=current.replication,
            )
        )
        joining = [n for n in target.nodes if not current.has_node(n.node_id)]
        for n in joining:
            cluster.start_node(n.node_id)
        if joining:
            await cluster.wait_ready(timeout=ready_timeout, nodes=[n.node_id for n in joining])
        final = await rb.run()
        return _finish_local(cluster, rb, final)
    finally:
        await admin.close()
        await http.close()


def _finish_local(
    cluster: LocalCluster, rb: rebalance.Rebalancer, final: PartitionMap
) -> dict[str, Any]:
    """Stop the nodes the final map no longer has (drained: they hold no partition) and record
    the final map as the cluster's."""
    drained = [nid for nid in cluster.node_ids if not final.has_node(nid)]
    for node_id in drained:
        cluster.stop_node(node_id)
    cluster.set_map(final)
    progress = rb.progress
    return {
        "status": progress.status,
        "nodes": len(final.nodes),
        "epoch": final.epoch,
        "partitions_moved": progress.partitions_done,
        "steps": progress.steps_done,
        "bytes_moved": progress.bytes_moved,
        "seconds": round(progress.elapsed_s, 2),
        "stopped": drained,
    }


def state_dir(base_dir: str | None) -> str:
    """``base_dir`` if given, else the resolved default (see ``kvnode.localconf``)."""
    return localconf.resolve_state_dir(base_dir).path


async def scale(
    nodes: int | None,
    *,
    base_dir: str | None = None,
    max_concurrent: int = 2,
    on_progress: rebalance.ProgressCallback | None = None,
    abort: bool = False,
) -> dict[str, Any]:
    """``ringkv local scale``: see ``scale_cluster``."""
    cluster = LocalCluster.load(state_dir(base_dir))
    options = rebalance.Options(max_concurrent=max_concurrent)
    return await scale_cluster(
        cluster, nodes, options=options, on_progress=on_progress, abort=abort
    )


# -- CLI entry points --------------------------------------------------------------------------
async def up(
    *,
    nodes: int = 3,
    partitions: int = 16,
    replication: int = 3,
    base_dir: str | None = None,
    host: str = localconf.DEFAULT_HOST,
    base_port: int = localconf.DEFAULT_BASE_PORT,
    timeout: float = 90.0,
    auth: bool = False,
    tls: bool = False,
) -> dict[str, Any]:
    """Start (or restart, keeping data) the local cluster and wait until it serves. ``auth``
    turns bearer-token auth on (``kvnode.localauth``), ``tls`` HTTPS and Raft encryption
    (``kvnode.localtls``); each stays on for later ``up``s. TLS is turned on only while the
    cluster is down: a running node cannot switch, and Raft encryption must start everywhere
    at once."""
    where = localconf.resolve_state_dir(base_dir)
    if os.path.exists(os.path.join(where.path, STATE_FILE)):  # noqa: ASYNC240 (one stat)
        cluster = LocalCluster.load(where.path)
    else:
        cluster = LocalCluster.create(
            where.path,
            nodes=nodes,
            partitions=partitions,
            replication=replication,
            host=host,
            base_port=base_port,
        )
    if auth and localauth.TOKENS_ENV not in cluster.env:
        cluster.env.update(localauth.ensure_auth_files(cluster.base_dir).node_env())
        cluster.set_map(cluster.pmap)  # records the env in cluster.json
    if tls and localtls.CA_ENV not in cluster.env:
        running = [nid for nid in cluster.node_ids if cluster.is_running(nid)]
        if running:
            raise errors.InvalidArgument(
                f"cannot turn TLS on while {', '.join(running)} run: `ringkv local down` first"
            )
        cluster.env.update(localtls.ensure_tls_files(cluster.base_dir).cluster_env())
        cluster.set_map(cluster.pmap)
    cluster.start_all()
    info = await cluster.wait_ready(timeout=timeout)
    if await cluster.seal_bootstrap():
        info = await cluster.wait_ready(timeout=timeout)
    hint = f"export RINGKV_ENDPOINTS={','.join(cluster.endpoints)}"
    tls_doc: dict[str, Any] = {}
    if cluster.ca_file:  # without TLS the answer stays as it always was
        hint += f" RINGKV_CACERT={cluster.ca_file}"
        tls_doc["tls"] = {
            "ca_file": cluster.ca_file,
            "raft_password_file": cluster.env.get(localtls.RAFT_PASSWORD_ENV),
            "curl": f"curl --cacert {cluster.ca_file} {cluster.endpoints[0]}/readyz",
            "cli": f"ringkv --endpoints {cluster.endpoints[0]} --cacert {cluster.ca_file} get k",
        }
    auth_doc: Any = "OFF: anyone who reaches these ports can read, write and administer it"
    if localauth.TOKENS_ENV in cluster.env:
        admin_file = localauth.ensure_auth_files(cluster.base_dir).admin_token_file
        hint += f" RINGKV_TOKEN=$(cat {admin_file})"
        auth_doc = {
            "tokens_file": cluster.env[localauth.TOKENS_ENV],
            "admin_token_file": admin_file,
        }
    return {
        "dir": cluster.base_dir,
        "dir_from": where.source,
        "endpoints": cluster.endpoints,
        "epoch": info["epoch"],
        "partitions": cluster.pmap.partitions,
        "replication": cluster.pmap.replication,
        "leaders": info["leaders"],
        "auth": auth_doc,
        **tls_doc,
        "hint": hint,
    }


async def status(base_dir: str | None = None) -> dict[str, Any]:
    """The cluster as its running nodes see it now: ``epoch`` is the newest epoch any node
    reports (None if none answers), not the epoch of the map written at ``up``."""
    where = localconf.resolve_state_dir(base_dir)
    cluster = LocalCluster.load(where.path)
    views = await node_views(cluster)
    epochs = [int(v["epoch"]) for v in views.values() if v is not None]
    strays = [p.pid for p in cluster.stray_processes()]
    known = {cluster.pid(nid) for nid in cluster.node_ids}
    return {
        "dir": cluster.base_dir,
        "dir_from": where.source,
        "epoch": max(epochs) if epochs else None,
        "nodes": {
            nid: {
                "url": localtls.url(cluster.pmap.node(nid).http_url, cluster.env),
                "pid": cluster.pid(nid),
                "running": cluster.is_running(nid),
                "epoch": (views[nid] or {}).get("epoch"),
                "log": cluster.node(nid).log_path,
            }
            for nid in cluster.node_ids
        },
        "unlisted_pids": sorted(pid for pid in strays if pid not in known),
    }


def down(base_dir: str | None = None) -> str:
    """Stop every node (SIGTERM, then SIGKILL after 15 s), then any other node process of the
    state directory (e.g. started by a ``scale`` that was killed). Data stays for the next
    ``up``. Returns the state directory."""
    cluster = LocalCluster.load(state_dir(base_dir))
    cluster.stop_all()
    strays = cluster.stray_processes()
    for proc in strays:
        localprocs.signal_group(proc.pid, signal.SIGTERM)
    if localprocs.wait_gone([p.pid for p in strays], timeout=15.0):
        cluster.kill_everything()
    return cluster.base_dir
