"""Taking an online backup of every partition through the nodes' admin API.

Each partition is streamed from its leader (``GET /v1/admin/partitions/{p}/backup``), which
first runs a read barrier, so the file holds every write acknowledged before that request and
is the state after exactly the log entries 1..index. The file is written to ``<p>.part``,
fsynced, re-read (RKVSNAP count and SHA-256 trailer) and its records digested; that digest
must equal the one the leader computed from its own LevelDB state at the same index (a
separate reading of the same snapshot), and only then is the file renamed into place. The
manifest is written last, and the whole directory is verified once more from disk before the
backup is reported complete. Writes continue throughout: nothing is paused.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass
from typing import Any, BinaryIO

from kvnode.backup import files
from kvnode.backup import manifest as mf
from kvnode.client import NodeHttp
from kvnode.core import errors
from kvnode.core import files as core_files
from kvnode.core.model import PartitionMap
from kvnode.storage import snapshot

log = logging.getLogger(__name__)

RETRIABLE = (errors.NotLeader, errors.NotOwner, errors.Unavailable, errors.NotFound)


@dataclass(frozen=True, slots=True)
class Options:
    concurrency: int = 2
    """Partitions streamed at once."""
    partition_timeout_s: float = 900.0
    """Bound on one partition (all attempts); the error names the last problem."""
    idle_timeout_s: float = 60.0
    """Bound on each wait for more bytes of a stream."""


class BackupFailed(Exception):
    """The backup could not be completed; the directory holds no manifest."""


async def cluster_map(http: NodeHttp, endpoints: list[str]) -> tuple[PartitionMap, dict[str, Any]]:
    """(map, ``/v1/cluster`` body) from the first endpoint that answers."""
    problems = []
    for url in endpoints:
        try:
            _, info, _ = await http.call(url, "GET", "/v1/cluster", timeout=5.0)
            return PartitionMap.from_dict(info["map"]), info
        except (errors.KvError, OSError) as exc:
            problems.append(f"{url}: {exc}")
    raise BackupFailed("no node answered /v1/cluster: " + "; ".join(problems))


async def take_backup(
    endpoints: list[str], dest: str, *, http: NodeHttp, options: Options | None = None
) -> mf.Manifest:
    """Back up every partition of the cluster behind ``endpoints`` into the new directory
    ``dest`` and return the verified manifest."""
    opts = options or Options()
    await asyncio.to_thread(_prepare_dir, dest)
    started = time.time()
    pmap, _ = await cluster_map(http, endpoints)
    sem = asyncio.Semaphore(max(1, opts.concurrency))

    async def one(p: int) -> mf.PartitionEntry:
        async with sem:
            return await _backup_partition(http, endpoints, p, dest, opts)

    tasks = [asyncio.create_task(one(p)) for p in range(pmap.partitions)]
    try:
        entries = await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:  # one partition failed: stop the others, leave no writer behind
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    manifest = mf.Manifest(
        partitions=pmap.partitions,
        replication=pmap.replication,
        epoch=pmap.epoch,
        started_at=started,
        completed_at=time.time(),
        entries=tuple(entries),
        source_map=pmap.to_dict(),
    )
    await asyncio.to_thread(files.write_manifest, dest, manifest)
    verified = await asyncio.to_thread(files.verify, dest)
    log.info(
        "backup of %d partitions (%d keys, %d bytes) complete and verified in %s",
        verified.partitions,
        verified.keys,
        verified.size_bytes,
        dest,
    )
    return verified


def _prepare_dir(dest: str) -> None:
    os.makedirs(dest, exist_ok=True)
    if os.path.exists(os.path.join(dest, mf.MANIFEST_FILE)):
        raise BackupFailed(f"{dest} already holds a backup; give a new directory")


async def _leader_url(http: NodeHttp, endpoints: list[str], p: int) -> tuple[str, str]:
    """(node id, URL) of the node the cluster names as the leader of ``p``."""
    pmap, info = await cluster_map(http, endpoints)
    leader = info.get("leaders", {}).get(str(p))
    if leader is None or not pmap.has_node(leader):
        raise errors.Unavailable(f"partition {p} has no known leader right now", partition=p)
    return leader, pmap.node(leader).http_url


async def _backup_partition(
    http: NodeHttp, endpoints: list[str], p: int, dest: str, opts: Options
) -> mf.PartitionEntry:
    deadline = time.monotonic() + opts.partition_timeout_s
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            return await _attempt(http, endpoints, p, dest, opts, deadline)
        except RETRIABLE as exc:
            last = exc
            log.info("partition %d: backup attempt failed (%s); retrying", p, exc)
            await asyncio.sleep(0.5)
    raise BackupFailed(
        f"partition {p}: no verified backup within {opts.partition_timeout_s:.0f}s; "
        f"last problem: {last}"
    )


async def _attempt(
    http: NodeHttp, endpoints: list[str], p: int, dest: str, opts: Options, deadline: float
) -> mf.PartitionEntry:
    node_id, url = await _leader_url(http, endpoints, p)
    final = os.path.join(dest, mf.partition_file(p))
    part = final + ".part"
    captured_at = time.time()
    try:
        f = await asyncio.to_thread(_open_new, part)
        with f:
            await http.download(
                url,
                f"/v1/admin/partitions/{p}/backup",
                f,
                timeout=max(1.0, deadline - time.monotonic()),
                idle_timeout=opts.idle_timeout_s,
            )
            await asyncio.to_thread(_fsync, f)
        try:
            facts = await asyncio.to_thread(files.scan_file, part)
        except snapshot.SnapshotCorrupt as exc:
            msg = f"partition {p}: stream from {node_id} corrupt: {exc}"
            raise errors.Unavailable(msg) from exc
        node_digest = await _node_digest(http, url, p, facts.index, deadline)
        if node_digest != facts.digest:
            raise BackupFailed(
                f"partition {p}: the file written from {node_id} digests to {facts.digest} but "
                f"{node_id} digested {node_digest} at index {facts.index}"
            )
        await asyncio.to_thread(_commit, part, final)
    finally:
        await asyncio.to_thread(files.remove_quietly, part)
    log.info(
        "partition %d: backed up from %s at index %d (%d keys, %d bytes)",
        p,
        node_id,
        facts.index,
        facts.keys,
        facts.size_bytes,
    )
    return mf.PartitionEntry(
        partition=p,
        file=mf.partition_file(p),
        index=facts.index,
        keys=facts.keys,
        digest=facts.digest,
        size_bytes=facts.size_bytes,
        sha256=facts.sha256,
        items=facts.items,
        source_node=node_id,
        captured_at=captured_at,
    )


async def _node_digest(http: NodeHttp, url: str, p: int, index: int, deadline: float) -> str:
    """The digest the node computed at ``index`` (it starts computing it at capture)."""
    while time.monotonic() < deadline:
        _, body, _ = await http.call(
            url, "GET", f"/v1/admin/partitions/{p}/digest", params={"index": str(index)}, timeout=5
        )
        if body.get("digest") is not None:
            return str(body["digest"])
        await asyncio.sleep(0.1)
    raise errors.Unavailable(f"partition {p}: {url} did not finish its digest at {index}")


def _open_new(path: str) -> BinaryIO:
    return open(path, "wb")  # closed by the caller's with-block


def _fsync(f: BinaryIO) -> None:
    f.flush()
    os.fsync(f.fileno())


def _commit(part: str, final: str) -> None:
    os.replace(part, final)
    core_files.fsync_dir(os.path.dirname(os.path.abspath(final)))
