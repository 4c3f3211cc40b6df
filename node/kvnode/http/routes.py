"""Handlers of HTTP API v1: parse (``parse``), call the service, render JSON.

Handlers hold no logic of their own beyond shaping responses: validation lives in ``parse`` and
every error becomes a response in the app's error middleware (``errors`` table), so a handler
simply raises.
"""

from __future__ import annotations

import importlib.resources
import logging
from typing import Any

import prometheus_client
from aiohttp import web

from kvnode.core import errors
from kvnode.core.model import Record
from kvnode.core.ops import BatchOutcome, OpOutcome, Write
from kvnode.http import api, fastjson, parse, parse_admin
from kvnode.http import errors as http_errors

log = logging.getLogger(__name__)

KV_PREFIX = "/v1/kv/"
LIST_PARAMS = frozenset({"prefix", "cursor", "limit", "consistency", "keys_only"})
SCAN_PARAMS = frozenset({"partition", "prefix", "cursor", "limit", "consistency"})
GET_PARAMS = frozenset({"consistency"})
DELETE_PARAMS = frozenset({"if_version", "if_value"})
NO_PARAMS: frozenset[str] = frozenset()


def record_json(key: str, record: Record) -> dict[str, Any]:
    return {
        "key": key,
        "value": record.value,
        "version": record.version,
        "expires_at_ms": record.expires_at_ms,
    }


class Handlers:
    """Request handlers bound to one service (``api.ServiceApi``) and its limits."""

    def __init__(
        self,
        service: api.ServiceApi,
        *,
        registry: prometheus_client.CollectorRegistry,
        admin: api.AdminApi | None = None,
    ) -> None:
        self.service = service
        self.registry = registry
        self._admin = admin
        self._openapi: bytes | None = None

    # ------------------------------------------------------------ keys

    async def get_key(self, request: web.Request) -> web.Response:
        query = parse.parse_query(request.raw_path, allowed=GET_PARAMS)
        key = self._key(request)
        consistency = parse.parse_consistency(query)
        ctx = parse.parse_context(request.headers)
        record = await self.service.get(key, consistency=consistency, ctx=ctx)
        return fastjson.json_response(record_json(key, record))

    async def put_key(self, request: web.Request) -> web.Response:
        parse.parse_query(request.raw_path, allowed=NO_PARAMS)
        key = self._key(request)
        ctx = parse.parse_context(request.headers)
        body = parse.decode_json_object(await request.read())
        op = parse.parse_put_body(key, body, self.service.limits)
        result = await self.service.write(op, ctx=ctx)
        return fastjson.json_response({"key": result.key, "version": result.version})

    async def delete_key(self, request: web.Request) -> web.Response:
        query = parse.parse_query(request.raw_path, allowed=DELETE_PARAMS)
        key = self._key(request)
        ctx = parse.parse_context(request.headers)
        op = parse.parse_delete(key, query, self.service.limits)
        result = await self.service.write(op, ctx=ctx)
        body = {"key": result.key, "deleted": result.existed, "version": result.version}
        return fastjson.json_response(body)

    async def list_keys(self, request: web.Request) -> web.Response:
        query = parse.parse_query(request.raw_path, allowed=LIST_PARAMS)
        q = parse.parse_list(query, self.service.limits)
        ctx = parse.parse_context(request.headers)
        page = await self.service.list_keys(
            prefix=q.prefix, cursor=q.cursor, limit=q.limit, consistency=q.consistency, ctx=ctx
        )
        items = [{"key": k} if q.keys_only else record_json(k, r) for k, r in page.items]
        return fastjson.json_response({"items": items, "next_cursor": page.next_cursor})

    async def scan_partition(self, request: web.Request) -> web.Response:
        """One partition's share of a listing, for the node merging a ``GET /v1/kv`` (only when
        the service implements ``api.PartitionScanApi``)."""
        if not isinstance(self.service, api.PartitionScanApi):
            raise http_errors.NoRoute("this node does not serve partition scans", path=request.path)
        query = parse.parse_query(request.raw_path, allowed=SCAN_PARAMS)
        partition = parse.parse_partition(query)
        q = parse.parse_list(query, self.service.limits)
        ctx = parse.parse_context(request.headers)
        items, more = await self.service.scan_partition(
            partition,
            prefix=q.prefix,
            cursor=q.cursor,
            limit=q.limit,
            consistency=q.consistency,
            ctx=ctx,
        )
        body = {"items": [record_json(k, r) for k, r in items], "more": more}
        return fastjson.json_response(body)

    def _key(self, request: web.Request) -> str:
        key = parse.key_from_raw_path(request.raw_path, KV_PREFIX)
        self.service.limits.check_key(key)
        return key

    # ------------------------------------------------------------ batch

    async def batch(self, request: web.Request) -> web.Response:
        """All ops are validated before the service sees any; the answer lists exactly which ops
        applied (``batch_response`` has the one rule for the status)."""
        parse.parse_query(request.raw_path, allowed=NO_PARAMS)
        ctx = parse.parse_context(request.headers)
        body = parse.decode_json_object(await request.read())
        ops, atomic = parse.parse_batch(body, self.service.limits)
        outcome = await self.service.batch(ops, atomic=atomic, ctx=ctx)
        return batch_response(ops, outcome)

    # ------------------------------------------------------------ cluster and admin

    async def cluster(self, request: web.Request) -> web.Response:
        parse.parse_query(request.raw_path, allowed=NO_PARAMS)
        return fastjson.json_response(await self.service.cluster_info())

    async def install_map(self, request: web.Request) -> web.Response:
        parse.parse_query(request.raw_path, allowed=NO_PARAMS)
        pmap = parse_admin.parse_map(parse.decode_json_object(await request.read()))
        log.info("installing partition map epoch=%d via admin API", pmap.epoch)
        return fastjson.json_response(await self.service.install_map(pmap))

    async def partitions(self, request: web.Request) -> web.Response:
        return fastjson.json_response({"partitions": self.service.partition_status()})

    async def drain_state(self, request: web.Request) -> web.Response:
        parse.parse_query(request.raw_path, allowed=NO_PARAMS)
        return fastjson.json_response(self.service.drain_report())

    async def set_drain(self, request: web.Request) -> web.Response:
        parse.parse_query(request.raw_path, allowed=NO_PARAMS)
        ctx = parse.parse_context(request.headers)
        drained = parse_admin.parse_drain(parse.decode_json_object(await request.read()))
        report = await self.service.set_drained(drained, timeout=ctx.timeout_s)
        return fastjson.json_response(report)

    # ------------------------------------------------------------ partition admin (rebalancing)

    def admin(self, request: web.Request) -> api.AdminApi:
        if self._admin is None:
            raise http_errors.NoRoute("this node does not serve partition admin", path=request.path)
        return self._admin

    async def replica_state(self, request: web.Request) -> web.Response:
        parse.parse_query(request.raw_path, allowed=NO_PARAMS)
        p = parse_admin.partition_from_path(request.match_info["p"])
        return fastjson.json_response(self.admin(request).replica_state(p))

    async def seed_snapshot(self, request: web.Request) -> web.StreamResponse:
        parse.parse_query(request.raw_path, allowed=NO_PARAMS)
        p = parse_admin.partition_from_path(request.match_info["p"])
        meta, body = await self.admin(request).seed_stream(p)
        resp = web.StreamResponse(
            headers={
                "Content-Type": "application/octet-stream",
                "X-Ringkv-Raft-Index": str(meta["raft_index"]),
                "X-Ringkv-Store-Applied": str(meta["store_applied"]),
            }
        )
        await resp.prepare(request)
        async for chunk in body:
            await resp.write(chunk)
        await resp.write_eof()
        return resp

    async def backup_snapshot(self, request: web.Request) -> web.StreamResponse:
        parse.parse_query(request.raw_path, allowed=NO_PARAMS)
        p = parse_admin.partition_from_path(request.match_info["p"])
        ctx = parse.parse_context(request.headers)
        meta, body = await self.admin(request).backup_stream(p, timeout=ctx.timeout_s)
        resp = web.StreamResponse(
            headers={
                "Content-Type": "application/octet-stream",
                "X-Ringkv-Raft-Index": str(meta["raft_index"]),
                "X-Ringkv-Store-Applied": str(meta["store_applied"]),
            }
        )
        await resp.prepare(request)
        async for chunk in body:
            await resp.write(chunk)
        await resp.write_eof()
        return resp

    async def restore(self, request: web.Request) -> web.Response:
        query = parse.parse_query(request.raw_path, allowed=frozenset({"peers"}))
        p = parse_admin.partition_from_path(request.match_info["p"])
        peers = parse_admin.parse_peers(query)
        body = request.content.iter_chunked(1 << 20)
        result = await self.admin(request).restore(p, peers=peers, body=body)
        return fastjson.json_response(result)

    async def join(self, request: web.Request) -> web.Response:
        parse.parse_query(request.raw_path, allowed=NO_PARAMS)
        p = parse_admin.partition_from_path(request.match_info["p"])
        body = parse.decode_json_object(await request.read())
        source = parse_admin.admin_node_field(body, "source", allowed=frozenset({"source"}))
        return fastjson.json_response(await self.admin(request).join(p, source=source))

    async def members(self, request: web.Request) -> web.Response:
        parse.parse_query(request.raw_path, allowed=NO_PARAMS)
        p = parse_admin.partition_from_path(request.match_info["p"])
        ctx = parse.parse_context(request.headers)
        body = parse.decode_json_object(await request.read())
        add, remove = parse_admin.parse_member_change(body)
        result = await self.admin(request).change_member(
            p, add=add, remove=remove, timeout=ctx.timeout_s
        )
        return fastjson.json_response(result)

    async def leader(self, request: web.Request) -> web.Response:
        parse.parse_query(request.raw_path, allowed=NO_PARAMS)
        p = parse_admin.partition_from_path(request.match_info["p"])
        ctx = parse.parse_context(request.headers)
        body = parse.decode_json_object(await request.read())
        to = parse_admin.admin_node_field(body, "node_id", allowed=frozenset({"node_id"}))
        return fastjson.json_response(
            await self.admin(request).transfer_leader(p, to=to, timeout=ctx.timeout_s)
        )

    async def start_digest(self, request: web.Request) -> web.Response:
        parse.parse_query(request.raw_path, allowed=NO_PARAMS)
        p = parse_admin.partition_from_path(request.match_info["p"])
        ctx = parse.parse_context(request.headers)
        started = await self.admin(request).start_digest(p, timeout=ctx.timeout_s)
        return fastjson.json_response(started)

    async def digest(self, request: web.Request) -> web.Response:
        query = parse.parse_query(request.raw_path, allowed=frozenset({"index"}))
        p = parse_admin.partition_from_path(request.match_info["p"])
        index = parse_admin.required_index(query, "index")
        return fastjson.json_response(self.admin(request).digest(p, index))

    async def drop(self, request: web.Request) -> web.Response:
        parse.parse_query(request.raw_path, allowed=NO_PARAMS)
        p = parse_admin.partition_from_path(request.match_info["p"])
        return fastjson.json_response(await self.admin(request).drop(p))

    # ------------------------------------------------------------ probes and docs

    async def healthz(self, request: web.Request) -> web.Response:
        alive, body = self.service.health()
        return fastjson.json_response(body, status=200 if alive else 503)

    async def readyz(self, request: web.Request) -> web.Response:
        ready, details = self.service.readiness()
        return fastjson.json_response({"ready": ready, **details}, status=200 if ready else 503)

    async def metrics(self, request: web.Request) -> web.Response:
        body = prometheus_client.generate_latest(self.registry)
        return web.Response(
            body=body, headers={"Content-Type": prometheus_client.CONTENT_TYPE_LATEST}
        )

    async def openapi(self, request: web.Request) -> web.Response:
        if self._openapi is None:
            self._openapi = openapi_document()
        return web.Response(body=self._openapi, content_type="application/yaml")


def openapi_document() -> bytes:
    """The OpenAPI document shipped as package data (``kvnode/openapi.yaml``)."""
    return importlib.resources.files("kvnode").joinpath("openapi.yaml").read_bytes()


def batch_response(ops: list[Write], outcome: BatchOutcome) -> web.Response:
    """One rule for every batch, atomic or not: an error status means nothing was applied.

    - every op applied: 200 ``{"applied": true, "results": [...]}``;
    - some applied, some not (only possible without ``atomic``): 200 ``{"applied": false,
      "results": [...]}``, each failed op carrying its partition's error;
    - none applied: the status of the first failed op (request order), the body that error
      (``index`` = the failing op's position in ``ops``) plus ``applied: false`` and ``results``.

    Each result is ``{"index", "key", "applied": true, "version", "existed"}`` or ``{"index",
    "key", "applied": false, "error": Error}``. An error naming an op (a failed condition) has
    its ``index`` rewritten from the position inside the partition's share to the position in
    the request, so ``index`` always means the same thing.
    """
    position = {op.key: i for i, op in enumerate(ops)}
    remapped: dict[int, errors.KvError] = {}
    results: list[dict[str, Any]] = []
    first: errors.KvError | None = None
    for i, (op, o) in enumerate(zip(ops, outcome.outcomes, strict=True)):
        if o.error is None and o.result is not None:
            results.append({"index": i, "applied": True, **_result_json(op, o)})
            continue
        raw = o.error or errors.Internal("the service reported no outcome for this op")
        err = remapped.setdefault(id(raw), _request_positioned(raw, position))
        first = first or err
        results.append({"index": i, "key": op.key, "applied": False, "error": err.to_dict()})
    if first is None:
        return fastjson.json_response({"applied": True, "results": results})
    if any(r["applied"] for r in results):
        return fastjson.json_response({"applied": False, "results": results})
    return http_errors.error_response(first, extra={"applied": False, "results": results})


def _request_positioned(err: errors.KvError, position: dict[str, int]) -> errors.KvError:
    """``err`` with ``index`` set to the request position of the op it names (by ``key``; keys
    are unique within a batch). Errors that name no op are returned as they are."""
    key = err.details.get("key")
    if "index" not in err.details or not isinstance(key, str) or key not in position:
        return err
    return type(err)(err.message, **dict(err.details, index=position[key]))


def _result_json(op: Write, outcome: OpOutcome) -> dict[str, Any]:
    if outcome.result is None:
        raise errors.Internal(f"the service reported no result for key {op.key!r}")
    r = outcome.result
    return {"key": r.key, "version": r.version, "existed": r.existed}


# (method, path, handler name, metrics op); the OpenAPI document must list the same routes.
# A key may contain any character, a newline too: `[\s\S]*`, not `.*` (which stops at "\n" and
# made such keys a 404 no_route).
ROUTES: tuple[tuple[str, str, str, str], ...] = (
    ("GET", "/v1/kv", "list_keys", "list"),
    ("GET", "/v1/kv/{key:[\\s\\S]*}", "get_key", "get"),
    ("PUT", "/v1/kv/{key:[\\s\\S]*}", "put_key", "put"),
    ("DELETE", "/v1/kv/{key:[\\s\\S]*}", "delete_key", "delete"),
    ("GET", "/v1/internal/scan", "scan_partition", "list"),
    ("POST", "/v1/batch", "batch", "batch"),
    ("GET", "/v1/cluster", "cluster", "cluster"),
    ("PUT", "/v1/admin/map", "install_map", "admin"),
    ("GET", "/v1/admin/partitions", "partitions", "admin"),
    ("GET", "/v1/admin/drain", "drain_state", "admin"),
    ("PUT", "/v1/admin/drain", "set_drain", "admin"),
    ("GET", "/v1/admin/partitions/{p}", "replica_state", "admin"),
    ("DELETE", "/v1/admin/partitions/{p}", "drop", "admin"),
    ("GET", "/v1/admin/partitions/{p}/snapshot", "seed_snapshot", "admin"),
    ("POST", "/v1/admin/partitions/{p}/join", "join", "admin"),
    ("GET", "/v1/admin/partitions/{p}/backup", "backup_snapshot", "admin"),
    ("POST", "/v1/admin/partitions/{p}/restore", "restore", "admin"),
    ("POST", "/v1/admin/partitions/{p}/members", "members", "admin"),
    ("POST", "/v1/admin/partitions/{p}/leader", "leader", "admin"),
    ("POST", "/v1/admin/partitions/{p}/digest", "start_digest", "admin"),
    ("GET", "/v1/admin/partitions/{p}/digest", "digest", "admin"),
    ("GET", "/healthz", "healthz", "other"),
    ("GET", "/readyz", "readyz", "other"),
    ("GET", "/metrics", "metrics", "other"),
    ("GET", "/v1/openapi.yaml", "openapi", "other"),
)

OP_BY_ROUTE_NAME = {f"{name}.{method.lower()}": op for method, _, name, op in ROUTES}


def add_routes(app: web.Application, handlers: Handlers) -> None:
    for method, path, name, _op in ROUTES:
        app.router.add_route(method, path, getattr(handlers, name), name=f"{name}.{method.lower()}")
