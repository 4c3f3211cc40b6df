"""``python -m kvnode``: wiring only — settings → stores → Raft groups → service → HTTP."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry

from kvnode.auth import files as auth_files
from kvnode.auth import tlsfiles
from kvnode.auth import tokens as auth_tokens
from kvnode.client import NodeHttp
from kvnode.client.transport import TokenSource
from kvnode.http.app import ApiRunner, make_app
from kvnode.http.auth import AuthConfig
from kvnode.raft.groups import GroupManager, RaftTuning
from kvnode.service import mapstore
from kvnode.service.admin import PartitionAdmin
from kvnode.service.forward import Forwarder
from kvnode.service.metrics import DrainCollector, RaftCollector, ReseedCollector
from kvnode.service.node import NodeService
from kvnode.service.watch import WatchLimits, WatchService
from kvnode.settings import NodeSettings
from kvnode.storage.leveldb import LevelDBStore
from kvnode.storage.unsynced import UnsyncedStores

log = logging.getLogger("kvnode")

PORT_TAKEN_EXIT = 69  # sysexits EX_UNAVAILABLE: a port this node must listen on is taken
CONFIG_EXIT = 78  # sysexits EX_CONFIG: a tokens, credential, TLS or Raft password file is unusable


def auth_setup(settings: NodeSettings) -> tuple[AuthConfig | None, TokenSource]:
    """The API's auth and the credential for node-to-node calls; (None, None) when no tokens
    file is configured (auth off). Raises ValueError/OSError for an unusable file."""
    if not settings.auth_tokens_file or not settings.cluster_token_file:
        log.warning(
            "node %s: AUTHENTICATION IS OFF (no KVNODE_AUTH_TOKENS_FILE): anyone who reaches "
            "port %d can read, write and administer this cluster",
            settings.node_id,
            settings.http_port,
        )
        return None, None
    interval = settings.auth_reload_s
    table = auth_files.tokens_file(settings.auth_tokens_file, interval_s=interval)
    credential = auth_files.secret_file(settings.cluster_token_file, interval_s=interval)
    problem = auth_tokens.credential_problem(table.get(), credential.get())
    if problem:
        raise ValueError(f"{problem} ({settings.cluster_token_file})")
    log.info(
        "node %s: bearer-token auth on, tokens: %s; /metrics %s",
        settings.node_id,
        auth_tokens.describe(table.get().entries),
        settings.auth_metrics,
    )
    config = AuthConfig(table=table.get, metrics_open=settings.auth_metrics == "open")
    return config, lambda _url: credential.get()


def tls_setup(settings: NodeSettings) -> tlsfiles.ReloadingTls | None:
    """The node's TLS contexts, reloaded from the files; None when TLS is off. Raises
    ValueError (a partial set of ``KVNODE_TLS_*``) or ``TlsConfigError`` naming a bad file."""
    problem = settings.tls_problem()
    if problem:
        raise ValueError(problem)
    cert, key, ca = settings.tls_cert_file, settings.tls_key_file, settings.tls_ca_file
    if not (cert and key and ca):
        log.warning(
            "node %s: TLS IS OFF (no KVNODE_TLS_CERT_FILE/KEY_FILE/CA_FILE): the HTTP API on "
            "port %d, with its tokens and data, is plain text on the network",
            settings.node_id,
            settings.http_port,
        )
        return None
    paths = tlsfiles.TlsPaths(cert_file=cert, key_file=key, ca_file=ca)
    reloading = tlsfiles.ReloadingTls(paths, interval_s=settings.tls_reload_s)
    log.info(
        "node %s: TLS on (HTTPS only, TLS 1.2+): certificate %s, key %s, peers verified with %s "
        "as host %s; files re-read every %gs",
        settings.node_id,
        paths.cert_file,
        paths.key_file,
        paths.ca_file,
        settings.host,
        settings.tls_reload_s,
    )
    return reloading


def raft_password(settings: NodeSettings) -> str | None:
    """The Raft encryption password (read once: not reloadable), None when unset. Raises
    ValueError/OSError naming the file when it is unreadable or empty."""
    path = settings.raft_password_file
    if not path:
        log.warning(
            "node %s: RAFT ENCRYPTION IS OFF (no KVNODE_RAFT_PASSWORD_FILE): Raft ports from %d "
            "accept and send plain, unauthenticated traffic",
            settings.node_id,
            settings.raft_port_base,
        )
        return None
    try:
        with open(path, "rb") as f:
            password = f.read().decode("utf-8").strip()  # a trailing newline is no part of it
    except OSError as exc:
        raise ValueError(f"Raft password file {path} is unreadable: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ValueError(f"Raft password file {path} is not UTF-8 text") from None
    if not password:
        raise ValueError(f"Raft password file {path} is empty")
    log.info("node %s: Raft traffic encrypted with the password in %s", settings.node_id, path)
    return password


@dataclass(frozen=True, slots=True)
class Security:
    """What ``main`` checked before starting: auth, TLS and the Raft password."""

    auth: AuthConfig | None
    credential: TokenSource
    tls: tlsfiles.ReloadingTls | None
    raft_password: str | None


# On SIGTERM, leaderships are handed away for at most this long before the node stops (well
# inside Kubernetes' default 30 s grace period); a hand-off takes well under a second each.
SHUTDOWN_HANDOFF_S = 5.0


def taken_port(settings: NodeSettings) -> str | None:
    """Pre-flight: the first of this node's listening ports that cannot be bound, described
    for a human (None if all are free). Checked before anything starts so a taken port ends
    the process at once with its address, instead of PySyncObj retrying the bind and the node
    timing out later. Raft ports: every partition of the map the node knows (it may be asked
    to host any of them). SO_REUSEADDR as the real listeners use, so TIME-WAIT is no conflict."""
    ports = [(settings.http_port, "HTTP port")]
    known = [mapstore.load(os.path.join(settings.data_dir, "map.json"))]
    if settings.map_file:
        known.append(mapstore.load(settings.map_file))
    partitions = max((m.partitions for m in known if m is not None), default=0)
    ports += [
        (settings.raft_port_base + p, f"Raft port of partition {p}") for p in range(partitions)
    ]
    for port, what in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((settings.bind_host, port))
            except OSError as exc:
                return (
                    f"node {settings.node_id} cannot listen on {settings.bind_host}:{port} "
                    f"({what}): {exc.strerror}; another process holds it (`ss -ltnp "
                    f"'sport = :{port}'` shows which)"
                )
    return None


async def serve(settings: NodeSettings, security: Security) -> None:
    # Applies are not synced in either durability mode: the journal is what a write acknowledges,
    # and a store that may have lost unsynced writes in a host crash is rebuilt from it.
    unsynced = UnsyncedStores.begin(settings.data_dir)
    groups = GroupManager(
        data_dir=settings.data_dir,
        tuning=RaftTuning.from_settings(settings, password=security.raft_password),
        open_store=lambda path: unsynced.open(path, LevelDBStore.open, LevelDBStore.destroy),
        history_limits=settings.history_limits,
    )
    groups.start()
    tls = security.tls
    http = NodeHttp(
        token=security.credential,
        tls=None if tls is None else (lambda _url: tls.client_context()),
    )
    service = NodeService(settings=settings, groups=groups, forwarder=Forwarder(http))
    registry = CollectorRegistry()
    registry.register(RaftCollector(groups, settings.node_id))
    registry.register(DrainCollector(lambda: service.drained, settings.node_id))
    registry.register(ReseedCollector(lambda: service.needs_reseed, settings.node_id))
    await service.start()
    admin = PartitionAdmin(service=service, groups=groups, http=http)
    watches = WatchService(
        node_id=settings.node_id,
        histories=groups,
        current_map=lambda: service.pmap,
        http=http,
        limits=WatchLimits(
            buffer_bytes=settings.watch_buffer_bytes,
            stall_s=settings.watch_stall_s,
            max_watchers=settings.watch_max_watchers,
        ),
        registry=registry,
    )
    app = make_app(service, registry=registry, admin=admin, watches=watches, auth=security.auth)
    runner = ApiRunner(
        app,
        node_id=settings.node_id,
        access_log=None,
        keepalive_timeout=settings.http_idle_timeout_s,  # also bounds a first request's headers
    )
    await runner.setup()
    site = web.TCPSite(
        runner,
        settings.bind_host,
        settings.http_port,
        reuse_address=True,
        ssl_context=None if tls is None else tls.listening,
    )
    await site.start()
    log.info(
        "node %s serving %s on %s:%d (raft ports from %d, durability=%s)",
        settings.node_id,
        "http" if tls is None else "https",
        settings.bind_host,
        settings.http_port,
        settings.raft_port_base,
        settings.durability,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("node %s shutting down: handing its leaderships away first", settings.node_id)
    left = await service.hand_off_before_stop(SHUTDOWN_HANDOFF_S)
    if left:
        log.warning("still leading %s after %.0fs; stopping anyway", left, SHUTDOWN_HANDOFF_S)
    await watches.stop()  # open streams end now instead of holding the server open
    await runner.cleanup()
    await service.stop()
    await http.close()
    await asyncio.to_thread(groups.stop)
    unsynced.end()  # every store closed with a sync write


def main() -> None:
    settings = NodeSettings.from_env(os.environ)
    logging.basicConfig(
        level=settings.log_level,
        format=f"%(asctime)s %(levelname)s [{settings.node_id}] %(name)s: %(message)s",
    )
    problem = taken_port(settings)
    if problem:
        log.error("%s", problem)
        raise SystemExit(PORT_TAKEN_EXIT)
    try:
        auth, credential = auth_setup(settings)
    except (OSError, ValueError) as exc:
        log.error("node %s cannot start: auth configuration: %s", settings.node_id, exc)
        raise SystemExit(CONFIG_EXIT) from None
    try:
        tls = tls_setup(settings)
    except ValueError as exc:
        log.error("node %s cannot start: TLS configuration: %s", settings.node_id, exc)
        raise SystemExit(CONFIG_EXIT) from None
    try:
        password = raft_password(settings)
    except ValueError as exc:
        log.error("node %s cannot start: Raft encryption: %s", settings.node_id, exc)
        raise SystemExit(CONFIG_EXIT) from None
    security = Security(auth=auth, credential=credential, tls=tls, raft_password=password)
    # Plain asyncio, not uvloop: uvloop writes to sockets holding the GIL, which delays the
    # shared Raft ticker thread, and it showed no measurable gain (bench/COMPARE.md).
    asyncio.run(serve(settings, security))


if __name__ == "__main__":
    main()
