"""``NodeHttp``: one pooled HTTP connection manager for talking to ringkv nodes.

Used by the node to forward requests to partition leaders and by ``Client``. It does no retries
(the client is the one layer that retries); its job is to turn every outcome into either a
decoded JSON body or the right domain error, and above all to tell apart failures where the
request was certainly not sent (``Unavailable``, safe to retry) from failures after it may have
been sent (``UnknownOutcome`` for writes: the write may have applied).
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import Callable, Mapping
from typing import Any, BinaryIO

import aiohttp
import orjson
from multidict import CIMultiDictProxy
from yarl import URL

from kvnode.core import errors

log = logging.getLogger(__name__)

POOL_LIMIT = 256
POOL_LIMIT_PER_HOST = 64
CONNECT_TIMEOUT_S = 1.0
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
JSON_CONTENT_TYPE = "application/json"

Headers = CIMultiDictProxy[str]
# A bearer token for every request: fixed, or looked up per node base URL at each call (the
# node re-reads its cluster credential file; the operator has one credential per cluster).
TokenSource = str | Callable[[str], str | None] | None
# The TLS client context for calls to a node, fixed or looked up per node base URL (the node
# re-reads its CA file; the operator has one CA per cluster). With a context, a node's
# ``http://`` base URL (the partition map records plain host:port) is called as ``https://``:
# a cluster serves TLS on every node port or on none.
TlsSource = ssl.SSLContext | Callable[[str], ssl.SSLContext | None] | None

# Failures where the connection was never established, so nothing was sent. aiohttp >= 3.10
# tells a connect timeout apart from a read timeout; older versions do not (then a connect
# timeout counts as "may have been sent", the safe side).
_NOT_SENT: tuple[type[BaseException], ...] = (
    aiohttp.ClientConnectorError,
    *((aiohttp.ConnectionTimeoutError,) if hasattr(aiohttp, "ConnectionTimeoutError") else ()),
)


class NodeHttp:
    """Calls one node's HTTP API over a shared keep-alive connection pool.

    Pass a ``session`` to share one; otherwise one is created on first use (inside the running
    loop) and closed by ``close()``. ``path`` must already be percent-encoded (``/v1/kv/a%2Fb``).
    ``token`` (see ``TokenSource``) is sent as ``Authorization: Bearer`` on every request; it is
    never logged nor put in an error. ``tls`` (see ``TlsSource``) switches calls to HTTPS,
    verifying the node's certificate and host name against that context.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession | None = None,
        *,
        token: TokenSource = None,
        tls: TlsSource = None,
    ) -> None:
        self._session = session
        self._owns_session = session is None
        self._token = token
        self._tls = tls

    def _target(self, base_url: str, path: str) -> tuple[URL, ssl.SSLContext | bool]:
        """The URL to call and the ``ssl`` argument for aiohttp (True: its default checks)."""
        context = self.tls_context(base_url)
        base = base_url.rstrip("/")
        if context is not None:
            base = https_url(base)
        return URL(base + path, encoded=True), True if context is None else context

    def tls_context(self, base_url: str) -> ssl.SSLContext | None:
        """The client context calls to ``base_url`` use (None: plain HTTP, or an ``https://``
        URL verified by aiohttp's default, the system trust store)."""
        return self._tls(base_url) if callable(self._tls) else self._tls

    def _auth(self, base_url: str, headers: Mapping[str, str] | None) -> Mapping[str, str] | None:
        token = self._token(base_url) if callable(self._token) else self._token
        if not token or (headers is not None and "Authorization" in headers):
            return headers
        return {**(headers or {}), "Authorization": f"Bearer {token}"}

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=POOL_LIMIT, limit_per_host=POOL_LIMIT_PER_HOST, ttl_dns_cache=10
            )
            self._session = aiohttp.ClientSession(connector=connector)
            self._owns_session = True
        _no_silent_resend(self._session)
        return self._session

    def _forget_address(self, url: URL) -> None:
        """A connection that could not be made may mean the name now points elsewhere (a pod
        recreated with a new IP): the next attempt resolves it again instead of reusing the
        cached address for up to ``ttl_dns_cache`` seconds."""
        connector = None if self._session is None else self._session.connector
        if isinstance(connector, aiohttp.TCPConnector) and url.host is not None:
            connector.clear_dns_cache(url.host, url.port)

    async def close(self) -> None:
        if self._session is not None and self._owns_session and not self._session.closed:
            await self._session.close()

    async def call(
        self,
        base_url: str,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float,
    ) -> tuple[int, dict[str, Any], Headers]:
        """Send one request; return ``(status, body, headers)`` for a 2xx, raise otherwise.

        Raises the node's domain error for a non-2xx answer; ``Unavailable(reason="connect")``
        when the connection could not be made (nothing was sent); ``UnknownOutcome`` when a
        non-idempotent request failed after it may have been sent, ``Unavailable`` for an
        idempotent one (a read can be retried).
        """
        method = method.upper()
        url, tls = self._target(base_url, path)
        client_timeout = aiohttp.ClientTimeout(
            total=timeout, sock_connect=min(timeout, CONNECT_TIMEOUT_S)
        )
        data = None
        if json_body is not None:
            # orjson, encoded once here (aiohttp's json= would run json.dumps and encode again).
            data = _encode(json_body)
            headers = {**(headers or {}), "Content-Type": JSON_CONTENT_TYPE}
        headers = self._auth(base_url, headers)
        try:
            async with self._get_session().request(
                method,
                url,
                params=params,
                data=data,
                headers=headers,
                timeout=client_timeout,
                ssl=tls,
            ) as resp:
                raw = await resp.read()
                status, resp_headers = resp.status, resp.headers
        except _NOT_SENT as exc:
            self._forget_address(url)
            raise connect_error(exc, base_url) from exc
        except aiohttp.InvalidURL as exc:
            raise errors.InvalidArgument(f"invalid node URL {base_url!r}: {exc}") from exc
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _after_send_failure(exc, method=method, base_url=base_url, path=path) from exc
        body = _decode(raw)
        if 200 <= status < 300:
            return status, body if isinstance(body, dict) else {"value": body}, resp_headers
        raise _error_for(status, body, headers=resp_headers, method=method, base_url=base_url)

    async def download(
        self, base_url: str, path: str, dest: BinaryIO, *, timeout: float, idle_timeout: float
    ) -> int:
        """GET ``path`` and write the body to ``dest`` as it arrives; returns the byte count.

        ``timeout`` bounds the whole transfer, ``idle_timeout`` each wait for more bytes. A
        non-2xx answer raises the node's domain error (nothing is written); a failure midway
        raises ``Unavailable`` (the caller discards the partial file).
        """
        url, tls = self._target(base_url, path)
        client_timeout = aiohttp.ClientTimeout(
            total=timeout, sock_connect=min(timeout, CONNECT_TIMEOUT_S), sock_read=idle_timeout
        )
        written = 0
        try:
            async with self._get_session().get(
                url, headers=self._auth(base_url, None), timeout=client_timeout, ssl=tls
            ) as resp:
                if not 200 <= resp.status < 300:
                    raw = await resp.read()
                    raise _error_for(
                        resp.status,
                        _decode(raw),
                        headers=resp.headers,
                        method="GET",
                        base_url=base_url,
                    )
                async for chunk in resp.content.iter_chunked(1 << 20):
                    dest.write(chunk)
                    written += len(chunk)
        except _NOT_SENT as exc:
            raise connect_error(exc, base_url) from exc
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise errors.Unavailable(
                f"download {base_url}{path} failed after {written} bytes: {exc!r}",
                reason="transfer",
                node=base_url,
            ) from exc
        return written

    async def upload(
        self, base_url: str, path: str, src: BinaryIO, *, params: Mapping[str, str], timeout: float
    ) -> dict[str, Any]:
        """POST the file ``src`` as an octet-stream body (streamed, not read into memory);
        return the JSON answer of a 2xx, raise the node's domain error otherwise. A failure
        after sending began is ``UnknownOutcome`` (the caller decides whether repeating is safe:
        a restore is, it answers ``already_hosted``)."""
        url, tls = self._target(base_url, path)
        client_timeout = aiohttp.ClientTimeout(
            total=timeout, sock_connect=min(timeout, CONNECT_TIMEOUT_S)
        )
        headers = self._auth(base_url, {"Content-Type": "application/octet-stream"})
        try:
            async with self._get_session().post(
                url,
                params=params,
                data=src,
                headers=headers,
                timeout=client_timeout,
                ssl=tls,
            ) as resp:
                raw = await resp.read()
                status, resp_headers = resp.status, resp.headers
        except _NOT_SENT as exc:
            raise connect_error(exc, base_url) from exc
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _after_send_failure(exc, method="POST", base_url=base_url, path=path) from exc
        body = _decode(raw)
        if 200 <= status < 300 and isinstance(body, dict):
            return body
        raise _error_for(status, body, headers=resp_headers, method="POST", base_url=base_url)


def https_url(base_url: str) -> str:
    """``base_url`` with ``http://`` turned into ``https://`` (a cluster with TLS serves it on
    every node port; the partition map records plain ``http://host:port``)."""
    if base_url.startswith("http://"):
        return "https://" + base_url[len("http://") :]
    return base_url


def connect_error(exc: BaseException, base_url: str) -> errors.KvError:
    """The error for a connection that was not made (nothing was sent). A certificate that
    does not verify is ``TlsVerifyFailed``, said plainly with the endpoint, never a generic
    "unavailable": retrying meets the same certificate. A TLS handshake that fails otherwise
    (e.g. the port speaks plain HTTP) stays ``Unavailable`` (a node may be mid-rollout) but
    says it was TLS."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        cert_error = exc.certificate_error
        why = getattr(cert_error, "verify_message", None) or str(cert_error)
        host = URL(base_url).host
        return errors.TlsVerifyFailed(
            f"TLS certificate of {base_url} not accepted: {why} (trusted CAs: the --cacert / "
            f"RINGKV_CACERT bundle, or the system store when none is given; the certificate "
            f"must be signed by one of them and name the host {host})",
            node=base_url,
        )
    if isinstance(exc, aiohttp.ClientConnectorSSLError):
        return errors.Unavailable(
            f"TLS handshake with {base_url} failed: {exc} (does that port serve TLS?)",
            reason="tls",
            node=base_url,
        )
    return errors.Unavailable(
        f"cannot connect to {base_url}: {exc}", reason="connect", node=base_url
    )


def no_answer(exc: BaseException) -> bool:
    """Whether ``exc`` (raised by ``NodeHttp``) means the node did not respond at all: the
    connection could not be made, or the attempt's time ran out (raised from the underlying
    aiohttp / timeout error). A connection the node closed is not counted: a live node does
    that to an idle keep-alive connection, and a dead one is refused on the next attempt."""
    return isinstance(exc.__cause__, (TimeoutError, *_NOT_SENT))


def _no_silent_resend(session: aiohttp.ClientSession) -> None:
    """Stop aiohttp from silently re-sending a PUT/DELETE whose keep-alive connection dropped.

    aiohttp (>= 3.10) retries "idempotent" methods, PUT and DELETE included, once when a reused
    connection closes before the answer. For ringkv a conditional PUT is not idempotent and the
    first send may have applied: the caller must see ``UnknownOutcome`` instead. There is no
    public switch, so the private flag is cleared (a unit test pins the behaviour).
    """
    if hasattr(session, "_retry_connection"):
        session._retry_connection = False


def _after_send_failure(
    exc: BaseException, *, method: str, base_url: str, path: str
) -> errors.KvError:
    what = "timed out" if isinstance(exc, asyncio.TimeoutError) else f"failed ({exc!r})"
    message = f"{method} {base_url}{path} {what} after the request may have been sent"
    if method in IDEMPOTENT_METHODS:
        return errors.Unavailable(message, reason="timeout", node=base_url)
    return errors.UnknownOutcome(message, node=base_url)


def _encode(body: Any) -> bytes:
    try:
        return orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:  # orjson.JSONEncodeError: e.g. an int beyond 64 bits
        return json.dumps(body).encode()


def _decode(raw: bytes) -> Any:
    if not raw:
        return {}
    try:
        return orjson.loads(raw)
    except ValueError:
        return {"text": raw.decode("utf-8", errors="replace")[:2000]}


def _error_for(
    status: int, body: Any, *, headers: Headers, method: str, base_url: str
) -> errors.KvError:
    """The domain error for a non-2xx answer: from its JSON ``code`` when it has one (a ringkv
    node), else from the status (a proxy, or a probe such as ``/readyz`` that answers 503)."""
    if isinstance(body, dict) and isinstance(body.get("code"), str):
        return errors.error_from_dict(body)
    details = dict(body) if isinstance(body, dict) else {"body": body}
    details.update(status=status, node=base_url)
    message = f"HTTP {status} from {base_url}"
    if status in (502, 503):
        retry_after = _retry_after(headers)
        return errors.Unavailable(message, **({"retry_after": retry_after} | details))
    if status == 429:
        return errors.Overloaded(message, **({"retry_after": _retry_after(headers)} | details))
    if status == 504:
        if method in IDEMPOTENT_METHODS:
            return errors.Unavailable(message, **details)
        return errors.UnknownOutcome(message, **details)
    if status == 413:
        return errors.TooLarge(message, **details)
    if 400 <= status < 500:
        return errors.InvalidArgument(message, **details)
    return errors.Internal(message, **details)


def _retry_after(headers: Headers) -> float:
    try:
        return max(0.0, float(headers.get("Retry-After", "1")))
    except ValueError:
        return 1.0
