"""``ringkv``: the command line over ``kvnode.client.SyncClient`` and ``kvnode.local``.

Every result is one JSON document on stdout; every error is one JSON document
(``{"code", "message", ...}``) on stderr, with an exit code scripts can branch on:

====  ==========================================================================
0     success
1     general failure (unavailable, unknown outcome, internal, local cluster)
2     usage: bad arguments or bad input (invalid_argument, too_large)
3     not found (``get`` of a missing key)
4     precondition failed (``cas``, conditional ``put``/``delete``/``batch``)
5     refused: no or unknown token (unauthenticated), or not allowed (permission_denied)
====  ==========================================================================

The token (``--token`` or ``RINGKV_TOKEN``) is sent as ``Authorization: Bearer``; ``ringkv
token new`` makes one and the tokens-file entry holding its hash. ``https://`` endpoints are
verified against ``--cacert`` / ``RINGKV_CACERT`` (else the system trust store); there is no
switch to skip verification: a certificate that does not verify is a ``tls_verify_failed``
error naming the endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from typing import IO, Any, NoReturn

import click

from kvnode import backupcli
from kvnode.client import BatchOp, BatchResult, SyncClient
from kvnode.core import errors

EXIT_OK, EXIT_GENERAL, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_PRECONDITION = 0, 1, 2, 3, 4
EXIT_AUTH = 5
EXIT_BY_CODE = {
    errors.Unauthenticated.code: EXIT_AUTH,
    errors.PermissionDenied.code: EXIT_AUTH,
    errors.InvalidArgument.code: EXIT_USAGE,
    errors.TooLarge.code: EXIT_USAGE,
    errors.NotFound.code: EXIT_NOT_FOUND,
    errors.PreconditionFailed.code: EXIT_PRECONDITION,
}
DEFAULT_ENDPOINTS = "http://127.0.0.1:7000"
_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())  # click >= 8.2


class LocalClusterError(errors.KvError):
    """``ringkv local`` could not do what was asked (no cluster there, timeout, ...)."""

    code = "local_failed"


def make_client(
    endpoints: list[str],
    *,
    timeout: float,
    direct: bool,
    token: str | None = None,
    ca_file: str | None = None,
) -> SyncClient:
    """The client the commands use (tests replace this factory)."""
    return SyncClient(endpoints, timeout=timeout, direct=direct, token=token, ca_file=ca_file)


def exit_code(err: errors.KvError) -> int:
    return EXIT_BY_CODE.get(err.code, EXIT_GENERAL)


def emit(doc: Any) -> None:
    click.echo(json.dumps(doc, ensure_ascii=False))


def emit_error(doc: dict[str, Any]) -> None:
    click.echo(json.dumps(doc, ensure_ascii=False), err=True)


class JsonCli(click.Group):
    """A click group whose failures, usage errors included, are JSON on stderr."""

    def main(self, *args: Any, **kwargs: Any) -> NoReturn:
        kwargs["standalone_mode"] = False
        try:
            result = super().main(*args, **kwargs)
        except errors.KvError as exc:
            emit_error(exc.to_dict())
            sys.exit(exit_code(exc))
        except _NO_ARGS_IS_HELP as exc:
            click.echo(exc.format_message(), err=True)
            sys.exit(EXIT_USAGE)
        except click.UsageError as exc:
            usage = exc.ctx.get_usage() if exc.ctx is not None else None
            emit_error({"code": "usage", "message": exc.format_message(), "usage": usage})
            sys.exit(EXIT_USAGE)
        except click.ClickException as exc:
            emit_error({"code": "error", "message": exc.format_message()})
            sys.exit(exc.exit_code)
        except click.Abort:
            emit_error({"code": "aborted", "message": "aborted"})
            sys.exit(EXIT_GENERAL)
        sys.exit(result if isinstance(result, int) else EXIT_OK)


def _endpoints(ctx: click.Context, param: click.Parameter, raw: str) -> list[str]:
    urls = [u.strip() for u in raw.split(",") if u.strip()]
    if not urls:
        raise click.BadParameter("at least one endpoint URL is required")
    bad = [u for u in urls if not u.startswith(("http://", "https://"))]
    if bad:
        raise click.BadParameter(f"not an http(s) URL: {', '.join(bad)}")
    return urls


@click.group(cls=JsonCli, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--endpoints",
    envvar="RINGKV_ENDPOINTS",
    default=DEFAULT_ENDPOINTS,
    show_default=True,
    callback=_endpoints,
    help="Comma-separated node URLs (env RINGKV_ENDPOINTS).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True, max=60),
    default=5.0,
    show_default=True,
    help="Deadline of each operation in seconds, retries included.",
)
@click.option(
    "--direct/--no-direct",
    default=True,
    show_default=True,
    help="Go straight to partition leaders (or let the first node forward).",
)
@click.option(
    "--token",
    envvar="RINGKV_TOKEN",
    default=None,
    show_default=False,
    help="Bearer token (env RINGKV_TOKEN); needed when the cluster has auth on.",
)
@click.option(
    "--cacert",
    envvar="RINGKV_CACERT",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="PEM CA bundle node certificates are verified with (env RINGKV_CACERT); with it, "
    "nodes are called over https. Default for https:// endpoints: the system trust store.",
)
@click.pass_context
def cli(
    ctx: click.Context,
    endpoints: list[str],
    timeout: float,
    direct: bool,
    token: str | None,
    cacert: str | None,
) -> None:
    """ringkv: a partitioned, Raft-replicated key-value store."""
    ctx.obj = {
        "endpoints": endpoints,
        "timeout": timeout,
        "direct": direct,
        "token": token,
        "cacert": cacert,
    }


def _client(ctx: click.Context) -> SyncClient:
    root = ctx.find_root().obj
    kwargs: dict[str, Any] = {"token": root["token"].strip()} if root["token"] else {}
    if root.get("cacert"):
        kwargs["ca_file"] = root["cacert"]
    return make_client(root["endpoints"], timeout=root["timeout"], direct=root["direct"], **kwargs)


CONSISTENCY = click.Choice(["strong", "eventual"])


@cli.command()
@click.argument("key")
@click.option("--consistency", type=CONSISTENCY, default="strong", show_default=True)
@click.pass_context
def get(ctx: click.Context, key: str, consistency: str) -> None:
    """Read KEY (exit 3 if absent)."""
    with _client(ctx) as client:
        entry = client.get(key, consistency=consistency)
    if entry is None:
        raise errors.NotFound(f"key {key!r} not found", key=key)
    emit(entry.to_json())


@cli.command()
@click.argument("key")
@click.argument("value")
@click.option("--ttl", type=click.FloatRange(min=0, min_open=True), help="Seconds to live.")
@click.option("--if-version", type=click.IntRange(min=0), help="Only if at this version.")
@click.option("--if-value", help="Only if the current value is this.")
@click.pass_context
def put(
    ctx: click.Context,
    key: str,
    value: str,
    ttl: float | None,
    if_version: int | None,
    if_value: str | None,
) -> None:
    """Write KEY = VALUE."""
    with _client(ctx) as client:
        version = client.put(key, value, ttl=ttl, if_version=if_version, if_value=if_value)
    emit({"key": key, "version": version})


@cli.command()
@click.argument("key")
@click.option("--if-version", type=click.IntRange(min=0), help="Only if at this version.")
@click.option("--if-value", help="Only if the current value is this.")
@click.pass_context
def delete(ctx: click.Context, key: str, if_version: int | None, if_value: str | None) -> None:
    """Delete KEY; prints whether it existed and the version removed (as the HTTP API)."""
    with _client(ctx) as client:
        result = client.delete_result(key, if_version=if_version, if_value=if_value)
    emit(result.to_json())


@cli.command()
@click.argument("key")
@click.argument("value")
@click.option("--if-version", type=click.IntRange(min=0), help="0 = only if absent.")
@click.option("--if-value", help="Only if the current value is this.")
@click.option("--ttl", type=click.FloatRange(min=0, min_open=True), help="Seconds to live.")
@click.pass_context
def cas(
    ctx: click.Context,
    key: str,
    value: str,
    if_version: int | None,
    if_value: str | None,
    ttl: float | None,
) -> None:
    """Compare-and-set KEY to VALUE (exit 4 if the condition does not hold)."""
    if (if_version is None) == (if_value is None):
        raise click.UsageError("cas needs exactly one of --if-version or --if-value")
    with _client(ctx) as client:
        version = client.cas(key, value, if_version=if_version, if_value=if_value, ttl=ttl)
    emit({"key": key, "version": version})


@cli.command()
@click.argument("file", type=click.File("r", encoding="utf-8"))
@click.pass_context
def batch(ctx: click.Context, file: IO[str]) -> int:
    """Apply a batch from FILE ('-' for stdin): a JSON body as for POST /v1/batch."""
    ops, atomic = read_batch(file)
    with _client(ctx) as client:
        result = client.batch(ops, atomic=atomic)
    emit(result.to_json())
    return batch_exit_code(result)


def read_batch(file: IO[str]) -> tuple[list[BatchOp], bool]:
    """``{"ops": [...], "atomic": bool}`` from a file; shape errors are usage errors."""
    try:
        body = json.load(file)
    except ValueError as exc:
        raise errors.InvalidArgument(f"batch file is not valid JSON: {exc}", field="file") from None
    if not isinstance(body, dict) or not isinstance(body.get("ops"), list):
        raise errors.InvalidArgument('batch file must be {"ops": [...], "atomic": bool}')
    unknown = sorted(set(body) - {"ops", "atomic"})
    if unknown:
        raise errors.InvalidArgument(f"unknown field(s) in batch file: {unknown}")
    atomic = body.get("atomic", False)
    if not isinstance(atomic, bool):
        raise errors.InvalidArgument("atomic must be true or false", field="atomic")
    ops = []
    for i, raw in enumerate(body["ops"]):
        if not isinstance(raw, dict):
            raise errors.InvalidArgument(f"ops[{i}] must be an object", field=f"ops[{i}]")
        ops.append(BatchOp.from_json(raw))
    return ops, atomic


def batch_exit_code(result: BatchResult) -> int:
    """0 when every op applied, else the exit code of the first op's error."""
    for item in result.results:
        if item.error is not None:
            return exit_code(item.error)
    return EXIT_OK


@cli.command()
@click.option("--prefix", default="", help="Only keys starting with this.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--cursor", help="next_cursor of a previous page.")
@click.option("--all", "follow", is_flag=True, help="Follow cursors to the end.")
@click.option("--consistency", type=CONSISTENCY, default="strong", show_default=True)
@click.pass_context
def keys(
    ctx: click.Context,
    prefix: str,
    limit: int,
    cursor: str | None,
    follow: bool,
    consistency: str,
) -> None:
    """List keys by prefix, one page (or --all pages)."""
    found: list[str] = []
    with _client(ctx) as client:
        while True:
            page = client.keys(prefix, limit=limit, cursor=cursor, consistency=consistency)
            found.extend(page.keys)
            cursor = page.next_cursor
            if not follow or cursor is None:
                break
    # the HTTP API's keys-only page (GET /v1/kv?keys_only=true), pages merged with --all
    emit({"items": [{"key": k} for k in found], "next_cursor": cursor})


@cli.command()
@click.pass_context
def cluster(ctx: click.Context) -> None:
    """Show a node's view: epoch, partition map, leaders, nodes."""
    with _client(ctx) as client:
        emit(client.cluster())


@cli.command()
@click.argument("prefix", default="")
@click.option("--from", "from_token", help="Resume token (or a version N) to start after.")
@click.option("--count", type=click.IntRange(min=1), help="Stop after this many changes.")
@click.pass_context
def watch(ctx: click.Context, prefix: str, from_token: str | None, count: int | None) -> None:
    """Print changes of keys under PREFIX as JSON lines (each with the token to resume from),
    reconnecting by itself; stops on Ctrl-C, after --count changes, or when the position is
    no longer kept (a compacted error, exit 1)."""
    root = ctx.find_root().obj
    token = root["token"].strip() if root["token"] else None
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            _watch(root["endpoints"], prefix, from_token, count, token=token, ca=root["cacert"])
        )


async def _watch(
    endpoints: list[str],
    prefix: str,
    from_token: str | None,
    count: int | None,
    *,
    token: str | None,
    ca: str | None,
) -> None:
    from kvnode.client import Client

    async with Client(endpoints, token=token, ca_file=ca) as client:
        watcher = client.watch(prefix, from_token=from_token)
        seen = 0
        try:
            async for event in watcher:
                click.echo(json.dumps(event.to_dict(), ensure_ascii=False))
                sys.stdout.flush()
                seen += 1
                if count is not None and seen >= count:
                    break
        finally:
            await watcher.aclose()


@cli.group()
def token() -> None:
    """Make bearer tokens and their tokens-file entries (README, Security)."""


@token.command("new")
@click.option("--name", required=True, help="Shown in logs and errors (not secret).")
@click.option("--role", type=click.Choice(["read", "write", "admin"]), required=True)
@click.option("--prefix", default=None, help="Only keys starting with this (not for admin).")
@click.option(
    "--tokens-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Append the entry to this tokens file (nodes reload it; created if missing).",
)
def token_new(name: str, role: str, prefix: str | None, tokens_file: str | None) -> None:
    """Print a new random token and the entry (its SHA-256) for the tokens file. The token is
    shown once: store it where its user reads it (a file, a Secret)."""
    from kvnode import localauth
    from kvnode.auth import tokens

    secret = tokens.new_token()
    entry = tokens.entry_json(name=name, role=tokens.Role.parse(role), token=secret, prefix=prefix)
    try:
        tokens.parse_table({"tokens": [entry]})
        if tokens_file:
            localauth.add_token(tokens_file, entry)
    except (OSError, ValueError) as exc:
        where = "tokens_file" if tokens_file else "role"
        raise errors.InvalidArgument(str(exc), field=where) from None
    emit({"token": secret, "entry": entry, **({"added_to": tokens_file} if tokens_file else {})})


@token.command("hash")
def token_hash() -> None:
    """Read a token on stdin; print its tokens-file hash (for tokens made elsewhere)."""
    from kvnode.auth import tokens

    raw = sys.stdin.read().strip()
    if not raw or any(c.isspace() for c in raw):
        raise errors.InvalidArgument("stdin must hold exactly one token", field="stdin")
    emit({"sha256": tokens.hash_token(raw)})


@cli.group()
def local() -> None:
    """Run a local cluster of node processes on this machine."""


LOCAL_DIR = click.option(
    "--dir",
    "base_dir",
    default=None,
    help="State directory. Default: $RINGKV_LOCAL_DIR, else .ringkv-local in the ringkv checkout "
    "this ringkv runs from (or the one containing the current directory), else "
    "~/.cache/ringkv/local.",
)


@local.command("up")
@click.option("--nodes", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--partitions", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--replication", type=click.IntRange(min=1), default=3, show_default=True)
@LOCAL_DIR
@click.option("--host", default="127.0.0.1", show_default=True, help="Address of every node.")
@click.option(
    "--base-port",
    type=click.IntRange(1024, 32767),
    default=7000,
    show_default=True,
    help="HTTP of node i: base+i; its Raft ports: base+10000+1000i+partition (all < 32768).",
)
@click.option(
    "--auth",
    is_flag=True,
    help="Turn bearer-token auth on: makes <dir>/auth/ (tokens file, cluster and admin tokens).",
)
@click.option(
    "--tls",
    is_flag=True,
    help="Serve HTTPS only and encrypt Raft: makes <dir>/tls/ (a CA, one certificate per node, "
    "a Raft password). Clients then need --cacert <dir>/tls/ca.crt.",
)
def local_up(
    nodes: int,
    partitions: int,
    replication: int,
    base_dir: str | None,
    host: str,
    base_port: int,
    auth: bool,
    tls: bool,
) -> None:
    """Start (or restart, keeping data) the local cluster and wait until it serves."""
    if replication > nodes:
        raise click.UsageError(f"--replication {replication} needs at least that many --nodes")
    from kvnode import local as local_cluster  # lazy: the node stack is not needed otherwise

    result = _local_call(
        lambda: asyncio.run(
            local_cluster.up(
                nodes=nodes,
                partitions=partitions,
                replication=replication,
                base_dir=base_dir,
                host=host,
                base_port=base_port,
                auth=auth,
                **({"tls": True} if tls else {}),
            )
        )
    )
    emit(result)


@local.command("status")
@LOCAL_DIR
def local_status(base_dir: str | None) -> None:
    """Show the local cluster's nodes, whether they run, and the epoch they report now."""
    from kvnode import local as local_cluster

    emit(_local_call(lambda: asyncio.run(local_cluster.status(base_dir))))


@local.command("down")
@LOCAL_DIR
def local_down(base_dir: str | None) -> None:
    """Stop the local cluster's nodes (data is kept for the next ``up``)."""
    from kvnode import local as local_cluster

    where = _local_call(lambda: local_cluster.down(base_dir))
    emit({"dir": where, "stopped": True})


@local.command("scale")
@click.argument("nodes", type=click.IntRange(min=1, max=10), required=False)
@LOCAL_DIR
@click.option(
    "--max-concurrent",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Partitions moving at once.",
)
@click.option("--abort", is_flag=True, help="Stop an unfinished rebalance, leaving it healthy.")
@click.option("--quiet", is_flag=True, help="No progress bar on stderr.")
def local_scale(
    nodes: int | None, base_dir: str | None, max_concurrent: int, abort: bool, quiet: bool
) -> None:
    """Scale the local cluster to NODES nodes, moving data live.

    New nodes are started first; partitions then move one membership change at a time (seed,
    add, catch up, verify digests, remove, drop); drained nodes are stopped last. An
    interrupted scale resumes where it stopped when run again (NODES may be omitted).
    """
    from kvnode import local as local_cluster

    bar = None if quiet else ProgressBar()
    try:
        result = _local_call(
            lambda: asyncio.run(
                local_cluster.scale(
                    nodes,
                    base_dir=base_dir,
                    max_concurrent=max_concurrent,
                    on_progress=None if bar is None else bar.update,
                    abort=abort,
                )
            )
        )
    finally:
        if bar is not None:
            bar.close()
    emit(result)


class ProgressBar:
    """One self-rewriting stderr line: a bar over steps, partitions moved, bytes, ETA."""

    WIDTH = 30

    def __init__(self) -> None:
        self._shown = False

    def update(self, p: Any) -> None:
        total = max(1, p.steps_total)
        filled = int(self.WIDTH * p.steps_done / total)
        eta = "?" if p.eta_s is None else f"{p.eta_s:.0f}s"
        line = (
            f"[{'#' * filled}{'.' * (self.WIDTH - filled)}] "
            f"{p.partitions_done}/{p.partitions_total} partitions, "
            f"{p.steps_done}/{p.steps_total} steps, {p.bytes_moved / 1e6:.1f} MB moved, "
            f"{p.elapsed_s:.0f}s elapsed, ETA {eta} ({p.status})"
        )
        click.echo(f"\r{line}", nl=False, err=True)
        self._shown = True

    def close(self) -> None:
        if self._shown:
            click.echo("", err=True)


def _local_call(fn: Any) -> Any:
    """Run a ``kvnode.local`` entry point; its plain failures become JSON errors (exit 1)."""
    from kvnode.rebalance.executor import RebalanceFailed, UnfinishedRebalance

    try:
        return fn()
    except errors.KvError:
        raise
    except (RebalanceFailed, UnfinishedRebalance) as exc:
        raise LocalClusterError(f"local cluster: {exc}", error=type(exc).__name__) from exc
    except (OSError, TimeoutError, ValueError, RuntimeError) as exc:
        raise LocalClusterError(f"local cluster: {exc}", error=type(exc).__name__) from exc


backupcli.register(cli, local, emit=emit, local_dir=LOCAL_DIR)


def main() -> None:
    """Console entry point (``ringkv``)."""
    cli.main(prog_name="ringkv")
