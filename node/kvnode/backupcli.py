"""The backup commands of ``ringkv`` (kept out of ``kvnode.cli`` to keep it small; ``cli``
registers them with ``register``, passing its helpers, so this module never imports upward).

* ``ringkv backup DIR``: online backup of the cluster behind ``--endpoints`` into DIR (what the
  Kubernetes backup Job runs, with the backup volume mounted).
* ``ringkv restore DIR --map FILE``: restore DIR into the nodes of FILE's map (a new cluster whose
  nodes run without a map), then install the map (what the Kubernetes restore Job runs).
* ``ringkv local backup DIR`` / ``ringkv local restore DIR``: the same on the local cluster.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
from collections.abc import Callable
from typing import Any

import click

from kvnode.backup import files, take
from kvnode.backup import restore as rst
from kvnode.client import NodeHttp
from kvnode.client.client import client_tls
from kvnode.core import errors
from kvnode.core.model import PartitionMap


class BackupError(errors.KvError):
    """A backup or restore that failed (corrupt backup, partition count mismatch, ...)."""

    code = "backup_failed"


def _run(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except errors.KvError:
        raise
    except (
        files.BackupCorrupt,
        take.BackupFailed,
        rst.RestoreFailed,
        ValueError,
        OSError,
        TimeoutError,
        RuntimeError,
    ) as exc:
        raise BackupError(str(exc), error=type(exc).__name__) from exc


def _token(ctx: click.Context) -> str | None:
    """The root ``--token`` / ``RINGKV_TOKEN``: backup and restore call admin endpoints, so
    under auth this must be an admin token (the cluster credential)."""
    token = (ctx.find_root().obj or {}).get("token")
    return token.strip() if token else None


def _tls(ctx: click.Context) -> ssl.SSLContext | None:
    """The root ``--cacert`` / ``RINGKV_CACERT`` (or the system store for https endpoints)."""
    root = ctx.find_root().obj or {}
    return client_tls(root.get("endpoints", []), root.get("cacert"))


async def _backup(
    endpoints: list[str],
    dest: str,
    concurrency: int,
    token: str | None,
    tls: ssl.SSLContext | None = None,
) -> dict[str, Any]:
    http = NodeHttp(token=token, tls=tls)
    try:
        opts = take.Options(concurrency=concurrency)
        manifest = await take.take_backup(endpoints, dest, http=http, options=opts)
    finally:
        await http.close()
    return manifest.summary(dest)


async def _restore(
    src: str, pmap: PartitionMap, token: str | None, tls: ssl.SSLContext | None = None
) -> dict[str, Any]:
    http = NodeHttp(token=token, tls=tls)
    try:
        return await rst.restore_backup(src, pmap, http=http)
    finally:
        await http.close()


def _read_map(path: str | None, raw: str | None) -> PartitionMap:
    if (path is None) == (raw is None):
        raise click.UsageError("give exactly one of --map FILE and --map-json (env RINGKV_MAP)")
    try:
        if path is not None:
            with open(path, encoding="utf-8") as f:
                raw = f.read()
        pmap = PartitionMap.from_dict(json.loads(raw or ""))
        pmap.validate()
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise click.BadParameter(f"not a partition map: {exc}") from exc
    return pmap


CONCURRENCY = click.option(
    "--concurrency", type=click.IntRange(1, 16), default=2, show_default=True,
    help="Partitions streamed at once.",
)  # fmt: skip


def register(
    cli: click.Group,
    local: click.Group,
    *,
    emit: Callable[[Any], None],
    local_dir: Callable[[Callable[..., Any]], Callable[..., Any]],
) -> None:
    """Add the backup commands to ``ringkv`` and ``ringkv local``."""

    @cli.command("backup")
    @click.argument("dest", type=click.Path(file_okay=False))
    @CONCURRENCY
    @click.pass_context
    def backup(ctx: click.Context, dest: str, concurrency: int) -> None:
        """Back up every partition of the cluster (online) into the new directory DEST."""
        endpoints = ctx.find_root().obj["endpoints"]
        where = os.path.abspath(dest)
        token = _token(ctx)
        tls = _tls(ctx)
        emit(_run(lambda: asyncio.run(_backup(endpoints, where, concurrency, token, tls))))

    @cli.command("restore")
    @click.argument("src", type=click.Path(exists=True, file_okay=False))
    @click.option("--map", "map_path", default=None, help="JSON file of the new cluster's map.")
    @click.option("--map-json", envvar="RINGKV_MAP", default=None, help="The map as JSON.")
    @click.pass_context
    def restore(ctx: click.Context, src: str, map_path: str | None, map_json: str | None) -> None:
        """Restore SRC into a new cluster whose nodes run without a map, then install it."""
        pmap = _read_map(map_path, map_json)
        token = _token(ctx)
        tls = _tls(ctx)
        emit(_run(lambda: asyncio.run(_restore(src, pmap, token, tls))))

    @cli.command("verify-backup")
    @click.argument("src", type=click.Path(exists=True, file_okay=False))
    def verify_backup(src: str) -> None:
        """Re-read every file of the backup in SRC and check it against its manifest."""
        manifest = _run(lambda: files.verify(src))
        emit(manifest.summary(os.path.abspath(src)))

    @local.command("backup")
    @click.argument("dest", type=click.Path(file_okay=False))
    @local_dir
    @CONCURRENCY
    def local_backup(dest: str, base_dir: str | None, concurrency: int) -> None:
        """Back up the local cluster (online) into the new directory DEST."""
        from kvnode import localbackup  # lazy: the local-cluster stack is not needed otherwise

        emit(
            _run(
                lambda: asyncio.run(
                    localbackup.backup(
                        os.path.abspath(dest), base_dir=base_dir, concurrency=concurrency
                    )
                )
            )
        )

    @local.command("restore")
    @click.argument("src", type=click.Path(exists=True, file_okay=False))
    @click.option("--nodes", type=click.IntRange(min=1), default=3, show_default=True)
    @click.option("--replication", type=click.IntRange(min=1), default=None)
    @local_dir
    @click.option("--host", default="127.0.0.1", show_default=True, help="Address of every node.")
    @click.option("--base-port", type=click.IntRange(1024, 32767), default=7000, show_default=True)
    @click.option("--tls", is_flag=True, help="The new cluster serves HTTPS only (as local up).")
    def local_restore(
        src: str,
        nodes: int,
        replication: int | None,
        base_dir: str | None,
        host: str,
        base_port: int,
        tls: bool,
    ) -> None:
        """Create a new local cluster of NODES nodes holding the backup in SRC."""
        from kvnode import localbackup

        extra = {"tls": True} if tls else {}

        emit(
            _run(
                lambda: asyncio.run(
                    localbackup.restore(
                        src,
                        nodes=nodes,
                        replication=replication,
                        base_dir=base_dir,
                        host=host,
                        base_port=base_port,
                        **extra,
                    )
                )
            )
        )
