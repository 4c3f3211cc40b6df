"""Restoring a verified backup into the nodes of a new cluster, before its map is installed.

Why this path (and not replaying the data as writes into a running cluster): each replica of a
partition gets the identical bytes as its Raft snapshot, at the backup's log index, with the new
voters, before the group has ever run. There is no moment where some keys are restored and
clients already write, nothing is applied twice (the store's applied index and the record
versions are the backup's, and PySyncObj resumes right after them), and the result is checked
byte for byte: every replica answers the digest of what landed in its LevelDB, which must be the
manifest's. Nodes refuse a restore once a map is installed, so it cannot overwrite a live
cluster. Only then is the epoch-1 map installed; the groups elect leaders and serve.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

from kvnode.backup import files
from kvnode.backup import manifest as mf
from kvnode.client import NodeHttp
from kvnode.core import errors
from kvnode.core.model import NodeInfo, PartitionMap

log = logging.getLogger(__name__)

UPLOAD_TIMEOUT_S = 1800.0
ATTEMPTS = 5


class RestoreFailed(Exception):
    """A restore that did not complete (message names the partition and node)."""


async def restore_backup(
    src: str, pmap: PartitionMap, *, http: NodeHttp, concurrency: int = 2
) -> dict[str, Any]:
    """Verify ``src``, restore every partition on every replica ``pmap`` gives it, then install
    ``pmap`` (epoch 1 of the new cluster) on every node. Raises ``files.BackupCorrupt`` before
    touching any node when the backup is not intact."""
    started = time.monotonic()
    manifest = await asyncio.to_thread(files.verify, src)
    mf.check_target(manifest, partitions=pmap.partitions)
    sem = asyncio.Semaphore(max(1, concurrency))

    async def one(entry: mf.PartitionEntry, node: NodeInfo) -> int:
        async with sem:
            return await _restore_replica(http, src, entry, node, pmap)

    jobs = [one(e, n) for e in manifest.entries for n in pmap.replicas_of(e.partition)]
    sent = await asyncio.gather(*jobs)
    for node in pmap.nodes:
        await http.call(node.http_url, "PUT", "/v1/admin/map", json_body=pmap.to_dict(), timeout=30)
    seconds = time.monotonic() - started
    log.info("restored %d partitions from %s in %.1fs", manifest.partitions, src, seconds)
    return {
        "partitions": manifest.partitions,
        "keys": manifest.keys,
        "size_bytes": manifest.size_bytes,
        "bytes_sent": sum(sent),
        "indexes": {str(p): i for p, i in manifest.indexes().items()},
        "epoch": pmap.epoch,
        "seconds": round(seconds, 3),
    }


async def _restore_replica(
    http: NodeHttp, src: str, entry: mf.PartitionEntry, node: NodeInfo, pmap: PartitionMap
) -> int:
    p = entry.partition
    peers = ",".join(n.raft_addr(p) for n in pmap.replicas_of(p))
    path = os.path.join(src, entry.file)
    last: BaseException | None = None
    for attempt in range(ATTEMPTS):
        try:
            with open(path, "rb") as f:  # noqa: ASYNC230 - aiohttp streams it in chunks
                body = await http.upload(
                    node.http_url,
                    f"/v1/admin/partitions/{p}/restore",
                    f,
                    params={"peers": peers},
                    timeout=UPLOAD_TIMEOUT_S,
                )
            break
        except (errors.Unavailable, errors.UnknownOutcome) as exc:  # a restore may be repeated
            last = exc
            await asyncio.sleep(0.5 * (attempt + 1))
    else:
        raise RestoreFailed(f"partition {p}: restore on {node.node_id} failed: {last}")
    got = (body.get("applied_index"), body.get("keys"), body.get("digest"))
    want = (entry.index, entry.keys, entry.digest)
    if got != want:
        raise RestoreFailed(
            f"partition {p}: {node.node_id} holds (index, keys, digest) {got} after the restore, "
            f"the backup says {want}"
        )
    log.info("partition %d: restored on %s at index %d", p, node.node_id, entry.index)
    return entry.size_bytes
