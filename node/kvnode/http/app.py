"""The aiohttp application of HTTP API v1: routes, error mapping, metrics, node header.

``make_app`` is the only entry point. It wires a ``ServiceApi`` (the real ``NodeService`` or a
fake) to the handlers; nothing here knows about Raft or storage. Two middlewares wrap every
request: the outer one records metrics, the inner one turns every exception into a JSON error
response (domain errors via the ``errors`` table, aiohttp's own 404/405/413 likewise, anything
else a logged 500). With ``auth`` a third, innermost one checks bearer tokens (``http.auth``),
so its 401/403 are JSON errors too. Requests the HTTP parser refuses before routing get the
same JSON body from ``ApiRunner``'s connection handler, so no request ever ends in a non-JSON
error.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import prometheus_client
from aiohttp import web, web_protocol
from aiohttp.typedefs import Handler, Middleware
from aiohttp.web_request import BaseRequest

from kvnode.core import errors
from kvnode.http import api, routes, watch
from kvnode.http import auth as http_auth
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
    auth: http_auth.AuthConfig | None = None,
    watches: watch.WatchApi | None = None,
) -> web.Application:
    """The HTTP API of one node over ``service``; metrics are registered on ``registry``.
    Without ``auth`` every request is allowed (no tokens file configured)."""
    metrics = HttpMetrics(registry)
    limits = service.limits
    middlewares = [_metrics_middleware(metrics), _error_middleware(service)]
    if auth is not None:
        middlewares.append(
            http_auth.auth_middleware(auth.table, limits=limits, metrics_open=auth.metrics_open)
        )
    app = web.Application(
        client_max_size=limits.max_body_bytes,
        # A legal key plus a legal if_value, percent-encoded, must fit in the request line
        # (aiohttp's default of 8190 bytes would answer a non-JSON 400 first).
        handler_args={"max_line_size": 3 * (limits.max_key_bytes + limits.max_value_bytes) + 4096},
        middlewares=middlewares,
    )
    routes.add_routes(app, routes.Handlers(service, registry=registry, admin=admin))
    watch.add_routes(app, watches, limits)

    async def stamp_node(request: web.Request, response: web.StreamResponse) -> None:
        response.headers[NODE_HEADER] = service.node_id

    app.on_response_prepare.append(stamp_node)
    return app


class _JsonErrorHandler(web_protocol.RequestHandler):
    """aiohttp's connection handler with ``handle_error`` answering in the API's JSON.

    A request the HTTP parser refuses (malformed request line, a NUL byte or other invalid
    character in a header, headers over the size limits) never reaches the application, its
    middlewares or ``on_response_prepare``: aiohttp answers it from ``handle_error`` with a
    plain-text body. Overriding that method is the hook aiohttp offers for this; everything
    else about the connection is unchanged (the connection is still closed afterwards).
    """

    node_id = ""

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        # The base method logs the error and refuses when a response is already under way; its
        # plain-text answer is replaced by the JSON one.
        super().handle_error(request, status, exc, message)
        err = http_errors.from_protocol_error(status, exc, message)
        resp = http_errors.error_response(err, headers={NODE_HEADER: self.node_id})
        resp.force_close()
        return resp


class _JsonErrorServer(web.Server):
    node_id = ""

    def __call__(self) -> web_protocol.RequestHandler:
        handler = _JsonErrorHandler(self, loop=self._loop, **self._kwargs)
        handler.node_id = self.node_id
        return handler


class ApiRunner(web.AppRunner):
    """``web.AppRunner`` whose connections answer even pre-routing errors as JSON errors
    with the node header (see ``_JsonErrorHandler``). Use it instead of ``web.AppRunner``."""

    def __init__(self, app: web.Application, *, node_id: str, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._node_id = node_id

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # Same object, one overridden method: the handler factory (see ``_JsonErrorServer``).
        server.__class__ = _JsonErrorServer
        assert isinstance(server, _JsonErrorServer)
        server.node_id = self._node_id
        return server


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
