"""The one table from error code to HTTP status, and the JSON error response.

Every non-2xx answer of the API is built here, so a code always has the same status and body shape
(``KvError.to_dict()``: ``{"code", "message", ...details}``). The client relies on that to rebuild
the same exception class (``kvnode.core.errors.error_from_dict``).

Two codes exist only at the HTTP layer: ``no_route`` (404 for an unknown path, distinct from a
missing key so a misconfigured base URL never looks like "key not found") and
``method_not_allowed`` (405).
"""

from __future__ import annotations

import math
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import LineTooLong

from kvnode.core import errors
from kvnode.http import fastjson


class NoRoute(errors.KvError):
    """No route matches the request path (not to be confused with a missing key)."""

    code = "no_route"


class MethodNotAllowed(errors.KvError):
    """The path exists but not with this method; ``details['allowed']`` lists the methods."""

    code = "method_not_allowed"


STATUS_BY_CODE: dict[str, int] = {
    errors.InvalidArgument.code: 400,
    errors.TooLarge.code: 413,
    errors.NotFound.code: 404,
    errors.PreconditionFailed.code: 412,
    errors.StaleEpoch.code: 409,
    errors.NotLeader.code: 421,
    errors.NotOwner.code: 421,
    errors.Unavailable.code: 503,
    errors.Overloaded.code: 429,
    errors.UnknownOutcome.code: 504,
    errors.Compacted.code: 410,
    errors.Internal.code: 500,
    errors.Unauthenticated.code: 401,
    errors.PermissionDenied.code: 403,
    errors.TlsVerifyFailed.code: 502,  # a node forwarding to a peer whose certificate failed
    NoRoute.code: 404,
    MethodNotAllowed.code: 405,
}

# Codes whose response tells the caller when to come back.
RETRY_AFTER_CODES = frozenset({errors.Unavailable.code, errors.Overloaded.code})


def status_of(err: errors.KvError) -> int:
    """HTTP status for a domain error (unknown codes are bugs: 500)."""
    return STATUS_BY_CODE.get(err.code, 500)


def error_headers(err: errors.KvError) -> dict[str, str]:
    """Extra headers for an error: ``Retry-After`` (whole seconds, at least 1) when retriable,
    ``Allow`` on a 405 (RFC 9110 requires it; the body's ``allowed`` lists the same),
    ``WWW-Authenticate`` on a 401 (RFC 6750: the scheme the client must use)."""
    if err.code == errors.Unauthenticated.code:
        return {"WWW-Authenticate": 'Bearer realm="ringkv"'}
    if err.code == MethodNotAllowed.code:
        allowed = err.details.get("allowed")
        return {"Allow": ", ".join(allowed) if isinstance(allowed, list) else ""}
    if err.code not in RETRY_AFTER_CODES:
        return {}
    return {"Retry-After": str(retry_after_seconds(err.details.get("retry_after")))}


def retry_after_seconds(raw: Any) -> int:
    """``details['retry_after']`` rounded up to whole seconds; 1 when absent or unusable."""
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        return 1
    return max(1, math.ceil(raw))


def error_response(
    err: errors.KvError,
    *,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """The JSON response for ``err``; ``extra`` adds body fields (e.g. a batch's results)."""
    body = err.to_dict()
    if extra:
        body.update(extra)
    all_headers = error_headers(err)
    if headers:
        all_headers.update(headers)
    return fastjson.json_response(body, status=status_of(err), headers=all_headers)


def from_http_exception(exc: web.HTTPException, *, path: str) -> errors.KvError:
    """Translate aiohttp's own HTTP errors (no route, wrong method, body too large) to domain
    errors, so even the framework's refusals are JSON with a stable code."""
    if isinstance(exc, web.HTTPNotFound):
        return NoRoute(f"no route for {path}", path=path)
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = sorted(exc.allowed_methods)
        return MethodNotAllowed(f"method {exc.method} not allowed here", allowed=allowed)
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return errors.TooLarge(f"request body too large: {exc.text}", field="body")
    if 400 <= exc.status < 500:
        return errors.InvalidArgument(exc.reason or "bad request", status=exc.status)
    return errors.Internal(exc.reason or "internal error", status=exc.status)


def from_protocol_error(
    status: int, exc: BaseException | None, message: str | None
) -> errors.KvError:
    """The domain error for a request aiohttp refused before routing it (malformed request
    line or headers, a NUL byte in a header, headers over the size limits), so even those
    answers are ``{code, message}`` JSON. Sizes are ``too_large`` (413) as everywhere else."""
    text = (message or (str(exc) if exc is not None else "") or "malformed HTTP request")[:300]
    if isinstance(exc, LineTooLong):
        return errors.TooLarge(f"request line or header too long: {text}", field="headers")
    if 400 <= status < 500:
        return errors.InvalidArgument(f"malformed HTTP request: {text}", field="request")
    return errors.Internal("internal error; see the node log")
