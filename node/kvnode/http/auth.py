"""The authentication and authorization middleware (bearer tokens, ``kvnode.auth.tokens``).

Every route is classified by its aiohttp route name (``<handler>.<method>``, see
``routes.ROUTES``) in ``RULES``; a route that is not listed needs an ``admin`` token, so a route
added later is protected until someone decides otherwise (deny by default). ``/healthz``,
``/readyz`` and the OpenAPI document are open (probes carry no credential); ``/metrics`` is open
or needs any valid token (``metrics_open``). A request that matches no route falls through to
its 404/405: there is nothing to protect.

Order of checks: credential (401 ``unauthenticated`` with ``WWW-Authenticate: Bearer``: none,
another scheme, or unknown), then role, then key scope (403 ``permission_denied``). The scope
of a batch is every key in it; of a listing, its ``prefix`` parameter. Neither the token nor its
hash ever appears in a response or a log line; the token's *name* may (it is not a secret).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from kvnode.auth.tokens import Role, TokenEntry, TokenTable, bearer_token
from kvnode.core import errors
from kvnode.core.ops import Limits
from kvnode.http import parse

log = logging.getLogger(__name__)

# The TokenEntry of an authenticated request, for handlers that need to know who asks.
PRINCIPAL = web.RequestKey("ringkv.principal", TokenEntry)
KV_PREFIX = "/v1/kv/"
MAX_KEYS_SHOWN = 5


class Scope(Enum):
    NONE = "none"  # no key involved
    KEY = "key"  # the key in the path
    LIST = "list"  # the ``prefix`` query parameter
    BATCH = "batch"  # every op's key in the body


@dataclass(frozen=True, slots=True)
class Need:
    role: Role | None  # None: open to anyone
    scope: Scope = Scope.NONE


OPEN = Need(None)
ADMIN = Need(Role.ADMIN)

RULES: dict[str, Need] = {
    "get_key.get": Need(Role.READ, Scope.KEY),
    "list_keys.get": Need(Role.READ, Scope.LIST),
    "put_key.put": Need(Role.WRITE, Scope.KEY),
    "delete_key.delete": Need(Role.WRITE, Scope.KEY),
    "batch.post": Need(Role.WRITE, Scope.BATCH),
    "cluster.get": Need(Role.READ),  # the map and leaders: what a smart client routes by
    "watch.get": Need(Role.READ, Scope.LIST),  # a watch reads values under its ``prefix``
    "healthz.get": OPEN,
    "readyz.get": OPEN,
    "openapi.get": OPEN,
    # "metrics.get" is decided by the metrics_open setting; every other route needs ADMIN
    # (/v1/admin/..., /v1/internal/scan and /v1/internal/watch, which only nodes call, and
    # routes added later).
}


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """Auth of one node's API: ``table()`` gives the current token table (called per request);
    ``metrics_open`` leaves ``/metrics`` to anyone (else any valid token may scrape)."""

    table: Callable[[], TokenTable]
    metrics_open: bool = True


def need_of(route_name: str, *, metrics_open: bool) -> Need:
    if route_name == "metrics.get":
        return OPEN if metrics_open else Need(Role.READ)
    return RULES.get(route_name, ADMIN)


def auth_middleware(
    table: Callable[[], TokenTable], *, limits: Limits, metrics_open: bool
) -> Middleware:
    """Refuse requests whose token does not allow them; ``table()`` is called per request (it
    re-reads the tokens file when it changed, see ``kvnode.auth.files``)."""

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        info = request.match_info
        if info.http_exception is not None:
            return await handler(request)
        need = need_of(info.route.name or "", metrics_open=metrics_open)
        if need.role is None:
            return await handler(request)
        entry = authenticate(table(), request.headers.get("Authorization"))
        if not entry.can(need.role):
            raise errors.PermissionDenied(
                f"token {entry.name!r} has role {entry.role.label}; this needs {need.role.label}",
                token=entry.name,
                role=entry.role.label,
                required=need.role.label,
            )
        if entry.prefix is not None:
            await _check_scope(request, entry, need.scope, limits)
        request[PRINCIPAL] = entry
        return await handler(request)

    return check


def authenticate(table: TokenTable, header: str | None) -> TokenEntry:
    token = bearer_token(header)
    if token is None:
        raise errors.Unauthenticated("this request needs an Authorization: Bearer <token> header")
    entry = table.authenticate(token)
    if entry is None:
        raise errors.Unauthenticated("unknown token (revoked, rotated, or mistyped)")
    return entry


async def _check_scope(request: web.Request, entry: TokenEntry, scope: Scope, lim: Limits) -> None:
    prefix = entry.prefix or ""
    if scope is Scope.KEY:
        outside = entry.outside([parse.key_from_raw_path(request.raw_path, KV_PREFIX)])
    elif scope is Scope.LIST:
        query = parse.parse_query(request.raw_path, allowed=frozenset(request.query.keys()))
        wanted = query.get("prefix", "")
        if not entry.covers_prefix(wanted):
            raise _out_of_scope(entry, f"listing under {wanted!r} reaches outside {prefix!r}")
        return
    elif scope is Scope.BATCH:
        body = parse.decode_json_object(await request.read())
        ops, _ = parse.parse_batch(body, lim)  # the handler parses the cached body again
        outside = entry.outside([op.key for op in ops])
    else:
        return
    if outside:
        shown = outside[:MAX_KEYS_SHOWN]
        raise _out_of_scope(
            entry, f"{len(outside)} key(s) outside the token's prefix {prefix!r}", keys=shown
        )


def _out_of_scope(entry: TokenEntry, why: str, **details: object) -> errors.PermissionDenied:
    return errors.PermissionDenied(
        f"token {entry.name!r}: {why}", token=entry.name, prefix=entry.prefix, **details
    )
