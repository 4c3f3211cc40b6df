"""The aiohttp application of HTTP API v1: routes, error mapping, metrics, node header.

``make_app`` is the only entry point. It wires a ``ServiceApi`` (the real ``NodeService`` or a
fake) to the handlers; nothing here knows about Raft or storage. Two middlewares wrap every
request: the outer one records metrics, the inner one turns every exception into a JSON error
response (domain errors via the ``errors`` table, aiohttp's own 404/405/413 likewise, anything
else a logged 500), so no request ever ends in a non-JSON error.
"""

from __future__ import annotations

import logging
import time

import prometheus_client
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from kvnode.core import errors
from kvnode.http import api, routes
from kvnode.http import errors as http_errors
from kvnode.http.metrics import HttpMetrics

log = logging.getLogger(__name__)

NODE_HEADER = "X-Ringkv-Node"
CLIENT_CLOSED_STATUS = 499  # metrics label for requests whose client went away


def make_app(
    service: api.ServiceApi,
    *,
    registry: prometheus_client.CollectorRegistry,
    admin: api.AdminApi | None = None,
) -> web.Application:
    """The HTTP API of one node over ``service``; metrics are registered on ``registry``."""
    metrics = HttpMetrics(registry)
    limits = service.limits
    app = web.Application(
        client_max_size=limits.max_body_bytes,
        # A legal key plus a legal if_value, percent-encoded, must fit in the request line
        # (aiohttp's default of 8190 bytes would answer a non-JSON 400 first).
        handler_args={"max_line_size": 3 * (limits.max_key_bytes + limits.max_value_bytes) + 4096},
        middlewares=[_metrics_middleware(metrics), _error_middleware(service)],
    )
    routes.add_routes(app, routes.Handlers(service, registry=registry, admin=admin))

    async def stamp_node(request: web.Request, response: web.StreamResponse) -> None:
        response.headers[NODE_HEADER] = service.node_id

    app.on_response_prepare.append(stamp_node)
    return app


def _metrics_middleware(metrics: HttpMetrics) -> Middleware:
    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        start = time.perf_counter()
        status = CLIENT_CLOSED_STATUS
        try:
            response = await handler(request)
            status = response.status
            return response
        finally:
            op = routes.OP_BY_ROUTE_NAME.get(request.match_info.route.name or "", "other")
            metrics.observe(op, status=status, seconds=time.perf_counter() - start)

    return record


def _error_middleware(service: api.ServiceApi) -> Middleware:
    @web.middleware
    async def to_json(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except errors.KvError as exc:
            if isinstance(exc, errors.Internal):
                log.error(
                    "%s %s on node %s failed: %s",
                    request.method,
                    request.path,
                    service.node_id,
                    exc.to_dict(),
                )
            return http_errors.error_response(exc)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return http_errors.error_response(
                http_errors.from_http_exception(exc, path=request.path)
            )
        except Exception:
            log.exception(
                "unhandled error in %s %s on node %s (a bug)",
                request.method,
                request.path,
                service.node_id,
            )
            return http_errors.error_response(errors.Internal("internal error; see the node log"))

    return to_json
