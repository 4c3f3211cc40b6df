"""``ringkv local backup DIR`` and ``ringkv local restore DIR``: the backup package applied to
the local cluster of node processes (``kvnode.local``).

Restore always creates a new local cluster (in a state directory that has none): its nodes are
started without a map, every partition is restored on the replicas the new epoch-1 map gives
it (any node count >= the replication factor; the partition count is the backup's), then the
map is installed and the command waits until every partition has a leader.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

from kvnode import localconf, localtls
from kvnode.backup import files, take
from kvnode.backup import restore as rst
from kvnode.client import NodeHttp
from kvnode.core import errors
from kvnode.local import STATE_FILE, LocalCluster, state_dir

log = logging.getLogger(__name__)


async def backup(dest: str, *, base_dir: str | None = None, concurrency: int = 2) -> dict[str, Any]:
    cluster = LocalCluster.load(state_dir(base_dir))
    http = cluster.http()  # the cluster credential when the local cluster has auth on
    try:
        opts = take.Options(concurrency=concurrency)
        manifest = await take.take_backup(cluster.endpoints, dest, http=http, options=opts)
    finally:
        await http.close()
    return manifest.summary(dest)


async def restore(
    src: str,
    *,
    nodes: int = 3,
    replication: int | None = None,
    base_dir: str | None = None,
    host: str = localconf.DEFAULT_HOST,
    base_port: int = localconf.DEFAULT_BASE_PORT,
    timeout: float = 120.0,
    tls: bool = False,
) -> dict[str, Any]:
    """Create a new local cluster of ``nodes`` nodes holding the backup in ``src`` (with
    ``tls``: HTTPS and Raft encryption, ``kvnode.localtls``, as ``local up --tls``)."""
    manifest = await asyncio.to_thread(files.verify, src)
    where = localconf.resolve_state_dir(base_dir)
    if os.path.exists(os.path.join(where.path, STATE_FILE)):  # noqa: ASYNC240 (one stat)
        raise ValueError(
            f"{where.path} already holds a local cluster: restore creates a new one; pass "
            "another --dir (or remove that cluster first)"
        )
    cluster = LocalCluster.create(
        where.path,
        nodes=nodes,
        partitions=manifest.partitions,
        replication=replication or min(manifest.replication, nodes),
        host=host,
        base_port=base_port,
    )
    if tls:
        cluster.env.update(localtls.ensure_tls_files(cluster.base_dir).cluster_env())
        cluster.set_map(cluster.pmap)  # records the env in cluster.json
    return await restore_into(cluster, src, timeout=timeout)


async def restore_into(
    cluster: LocalCluster, src: str, *, timeout: float = 120.0
) -> dict[str, Any]:
    """Restore ``src`` into ``cluster``, created (``LocalCluster.create``) but never started:
    start its nodes without a map, restore every replica, install the map, wait until ready.
    On failure the nodes are stopped again."""
    map_file = os.path.join(cluster.base_dir, "map.json")
    os.replace(map_file, map_file + ".restoring")  # nodes must start without a map
    cluster.start_all()
    http = cluster.http()
    try:
        await _wait_alive(cluster, http, timeout=timeout)
        result = await rst.restore_backup(src, cluster.pmap, http=http)
    except BaseException:
        cluster.stop_all()
        raise
    finally:
        await http.close()
    os.replace(map_file + ".restoring", map_file)
    info = await cluster.wait_ready(timeout=timeout)
    if await cluster.seal_bootstrap():  # a volume lost from now on is a lost volume
        info = await cluster.wait_ready(timeout=timeout)
    return {
        **result,
        "dir": cluster.base_dir,
        "endpoints": cluster.endpoints,
        "leaders": info["leaders"],
        "hint": f"export RINGKV_ENDPOINTS={','.join(cluster.endpoints)}"
        + (f" RINGKV_CACERT={cluster.ca_file}" if cluster.ca_file else ""),
    }


async def _wait_alive(cluster: LocalCluster, http: NodeHttp, *, timeout: float) -> None:
    """Every node answers /healthz (it cannot be ready: it has no map yet)."""
    deadline = time.monotonic() + timeout
    pending = list(cluster.node_ids)
    while pending and time.monotonic() < deadline:
        node_id = pending[0]
        if not cluster.is_running(node_id):
            break
        try:
            await http.call(cluster.pmap.node(node_id).http_url, "GET", "/healthz", timeout=1.0)
            pending.pop(0)
        except (errors.KvError, OSError):
            await asyncio.sleep(0.2)
    if pending:
        raise TimeoutError(
            f"nodes {pending} did not start within {timeout}s\n{cluster.logs_report()}"
        )
