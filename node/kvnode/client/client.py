"""``Client``: the async ringkv client, and the one layer that retries on behalf of callers.

With ``direct=True`` it keeps the partition map from ``/v1/cluster``, sends writes and strong
reads straight to the partition leader (``X-Ringkv-Forward: 0`` so a node answers "not leader"
instead of forwarding, plus ``X-Ringkv-Epoch`` so a stale map is reported) and eventual reads to
any replica. Listings and multi-partition batches go to any node, which fans out itself (it
validates the whole batch before applying any of it, which a client-side split could not
promise).

Retry rules, all within the operation's deadline, after which the last error is raised:

- ``NotLeader`` with a leader hint / ``StaleEpoch`` with a newer map: learn it, retry at once
  (a few times in a row at most, then back off).
- ``Unavailable``, ``Overloaded``, ``NotOwner`` and hint-less redirects: back off (exponential,
  jittered, at least the server's ``retry_after``), refresh ``/v1/cluster``, retry.
- ``UnknownOutcome``: never retried, the write may have applied. Nor is a batch error whose
  results show that some op applied.

Each attempt gets at most ``attempt_timeout`` (default 2 s, about one default election timeout)
of the deadline, not all of it: a paused or cut-off node accepts the request and never answers,
and must not hold the operation. A read that ran out its attempt is retried on another node; a
write that did is ``UnknownOutcome`` as before (it may have applied) and is not retried. The
node that gave no answer is suspected for a while (``Routing.suspect``), so the next attempts
and operations go elsewhere while the cluster elects a new leader.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
import urllib.parse
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from kvnode.client.routing import Routing, attempt_budget
from kvnode.client.transport import NodeHttp, no_answer
from kvnode.client.types import BatchItem, BatchOp, BatchResult, Deletion, Entry, Page
from kvnode.client.watch import Watcher
from kvnode.core import errors, tls
from kvnode.core.ops import Consistency

log = logging.getLogger(__name__)

MAX_IMMEDIATE_RETRIES = 3
REFRESH_TIMEOUT_S = 2.0
MIN_ATTEMPT_S = 0.02  # less time than this left: no point in another attempt
SERVER_DEADLINE_SHARE = 0.9  # the node gets a bit less time than we wait, to answer precisely
ATTEMPT_TIMEOUT_S = 2.0


@dataclass(frozen=True, slots=True)
class _Call:
    """One HTTP request that the retry loop may send several times.

    ``key`` / ``partition`` make it routable to a partition (direct mode); ``leader`` says whether
    it needs the leader (writes, strong reads) or any replica (eventual reads).
    """

    method: str
    path: str
    params: Mapping[str, str] | None = None
    json_body: Any = None
    key: str | None = None
    partition: int | None = None
    leader: bool = True
    is_batch: bool = False


def key_path(key: str) -> str:
    return "/v1/kv/" + urllib.parse.quote(key, safe="")


class Client:
    """Async client over one or more node endpoints (``http://host:port`` or ``https://``).

    Use as ``async with Client([...]) as c:`` or call ``close()``. ``timeout`` is the deadline of
    each operation, retries included. ``token`` is a bearer token (the CLI takes it from
    ``RINGKV_TOKEN``) sent with every request, ``/v1/cluster`` refreshes included; ignored when
    ``http`` is given (that transport carries its own). ``attempt_timeout`` caps each attempt
    (see the module docstring): raise it for operations that legitimately take longer.

    TLS: ``ca_file`` (a PEM bundle path, or a ready ``ssl.SSLContext``) is what node
    certificates are verified against; with it, or with any ``https://`` endpoint (then the
    system trust store verifies), every call goes over HTTPS, the nodes the cluster map names
    and watches included. Verification is never switched off: a certificate that does not
    verify raises ``TlsVerifyFailed`` naming the endpoint.
    """

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        timeout: float = 5.0,
        direct: bool = True,
        http: NodeHttp | None = None,
        token: str | None = None,
        attempt_timeout: float = ATTEMPT_TIMEOUT_S,
        ca_file: str | ssl.SSLContext | None = None,
    ) -> None:
        if timeout <= 0 or attempt_timeout <= 0:
            raise ValueError("timeout and attempt_timeout must be positive")
        self._attempt_timeout = attempt_timeout
        self._routing = Routing(endpoints)
        self._timeout = timeout
        self._direct = direct
        self._token = token
        self._tls = client_tls(endpoints, ca_file)
        self._http = http or NodeHttp(token=token, tls=self._tls)
        self._owns_http = http is None
        self._refresh_lock = asyncio.Lock()
        self._refreshed_at = 0.0

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns_http:
            await self._http.close()

    # ------------------------------------------------------------ operations

    async def get(self, key: str, *, consistency: str = "strong") -> Entry | None:
        """The live entry for ``key``, or None when absent or expired."""
        level = Consistency.parse(consistency)
        call = _Call(
            "GET",
            key_path(key),
            params={"consistency": level.value},
            key=key,
            leader=level is Consistency.STRONG,
        )
        try:
            body = await self._send(call)
        except errors.NotFound:
            return None
        return Entry.from_json(body)

    async def put(
        self,
        key: str,
        value: str,
        *,
        ttl: float | None = None,
        if_version: int | None = None,
        if_value: str | None = None,
    ) -> int:
        """Write ``key`` once committed on a majority; the new version. ``ttl`` in seconds.

        Raises ``PreconditionFailed`` (with ``details['current_version']``) when a condition does
        not hold, ``UnknownOutcome`` when the write may or may not have applied.
        """
        body: dict[str, Any] = {"value": value}
        optional = {"ttl": ttl, "if_version": if_version, "if_value": if_value}
        body.update({k: v for k, v in optional.items() if v is not None})
        result = await self._send(_Call("PUT", key_path(key), json_body=body, key=key))
        return int(result["version"])

    async def delete(
        self, key: str, *, if_version: int | None = None, if_value: str | None = None
    ) -> bool:
        """Delete ``key``; whether it existed. Conditions as for ``put``."""
        return (await self.delete_result(key, if_version=if_version, if_value=if_value)).deleted

    async def delete_result(
        self, key: str, *, if_version: int | None = None, if_value: str | None = None
    ) -> Deletion:
        """``delete`` with the whole answer (also the version removed)."""
        params = {}
        if if_version is not None:
            params["if_version"] = str(if_version)
        if if_value is not None:
            params["if_value"] = if_value
        call = _Call("DELETE", key_path(key), params=params or None, key=key)
        return Deletion.from_json(await self._send(call))

    async def cas(
        self,
        key: str,
        value: str,
        *,
        if_version: int | None = None,
        if_value: str | None = None,
        ttl: float | None = None,
    ) -> int:
        """``put`` that requires a condition (``if_version=0``: only if absent); new version."""
        if if_version is None and if_value is None:
            raise errors.InvalidArgument("cas needs if_version or if_value", field="if_version")
        return await self.put(key, value, ttl=ttl, if_version=if_version, if_value=if_value)

    async def batch(self, ops: Sequence[BatchOp], *, atomic: bool = False) -> BatchResult:
        """Apply ``ops``; each partition's share applies all or nothing.

        Returns per-op outcomes (``applied`` False when some partition failed, whether or not
        other ops applied; see ``BatchResult.raise_for_error``). Raises when the whole request
        was refused (bad input, stale epoch: nothing applied) or its outcome is unknown.
        """
        if not ops:
            raise errors.InvalidArgument("batch must contain at least one operation", field="ops")
        deadline = self._deadline()
        partition = await self._single_partition(ops, deadline=deadline)
        call = _Call(
            "POST",
            "/v1/batch",
            json_body={"ops": [op.to_json() for op in ops], "atomic": atomic},
            partition=partition,
            is_batch=True,
        )
        try:
            body = await self._send(call, deadline=deadline)
        except errors.KvError as exc:
            results = exc.details.get("results")
            if not isinstance(results, list):
                raise
            items = tuple(BatchItem.from_json(r) for r in results)
            details = {k: v for k, v in exc.details.items() if k not in ("applied", "results")}
            return BatchResult(False, items, error=type(exc)(exc.message, **details))
        items = tuple(BatchItem.from_json(r) for r in body["results"])
        return BatchResult(bool(body.get("applied", True)), items)

    async def keys(
        self,
        prefix: str = "",
        *,
        limit: int = 100,
        cursor: str | None = None,
        consistency: str = "strong",
    ) -> Page:
        """One page of live entries whose key starts with ``prefix``, in key order."""
        params = {
            "prefix": prefix,
            "limit": str(limit),
            "consistency": Consistency.parse(consistency).value,
        }
        if cursor is not None:
            params["cursor"] = cursor
        body = await self._send(_Call("GET", "/v1/kv", params=params))
        items = tuple(Entry.from_json(i) for i in body["items"])
        return Page(items, body.get("next_cursor"))

    async def scan(
        self, prefix: str = "", *, consistency: str = "strong", page_size: int = 100
    ) -> AsyncIterator[Entry]:
        """Every live entry under ``prefix``, following cursors page by page."""
        cursor: str | None = None
        while True:
            page = await self.keys(prefix, limit=page_size, cursor=cursor, consistency=consistency)
            for entry in page.items:
                yield entry
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def watch(self, prefix: str = "", *, from_token: str | None = None) -> Watcher:
        """Changes of keys starting with ``prefix`` as an async iterator of ``WatchEvent``,
        from ``from_token`` (a token from an earlier watch, or a version ``"N"``) or from now;
        it reconnects and resumes by itself (``kvnode.client.watch``)."""
        return Watcher(
            self._watch_candidates,
            prefix=prefix,
            from_token=from_token,
            tls=self._tls,
            token=self._token,
        )

    def _watch_candidates(self) -> list[str]:
        urls = list(self._routing.endpoints)
        if self._routing.pmap is not None:
            urls += [n.http_url for n in self._routing.pmap.nodes if n.http_url not in urls]
        return urls

    async def cluster(self) -> dict[str, Any]:
        """Some node's ``/v1/cluster`` view (also refreshes the cached map)."""
        body = await self._send(_Call("GET", "/v1/cluster"))
        self._routing.adopt_cluster(body)
        return body

    # ------------------------------------------------------------ the retry loop

    def _deadline(self) -> float:
        return time.monotonic() + self._timeout

    async def _send(self, call: _Call, *, deadline: float | None = None) -> dict[str, Any]:
        """Send ``call`` until it succeeds, fails for good, or the deadline passes."""
        deadline = deadline or self._deadline()
        attempt = immediate = 0
        last: errors.KvError | None = None
        avoid: str | None = None
        while deadline > time.monotonic():
            url, headers = await self._target(call, deadline=deadline, avoid=avoid)
            # Only the next attempt skips a node that gave no answer; after that, the suspicion
            # (``Routing.suspect``, a few seconds) decides. An operation-long ``avoid`` ignored
            # every later hint naming that node, even once it answered again: a pod recreated
            # under its old name and elected leader was never asked, and the operation ran out
            # its deadline on "not leader" answers from the other replicas.
            avoid = None
            budget = attempt_budget(deadline - time.monotonic(), self._attempt_timeout)
            if budget <= 0:
                break
            headers["X-Ringkv-Timeout"] = _timeout_header(budget)
            try:
                _, body, _ = await self._http.call(
                    url,
                    call.method,
                    call.path,
                    params=call.params,
                    json_body=call.json_body,
                    headers=headers,
                    timeout=budget,
                )
                self._routing.vouch(url)
                return body
            except errors.KvError as exc:
                if no_answer(exc):
                    self._routing.suspect(url)  # paused, cut off or dead: go elsewhere
                    avoid = url
                else:
                    self._routing.vouch(url)
                if not _may_retry(exc, call):
                    raise
                last = exc
                if immediate < MAX_IMMEDIATE_RETRIES and self._learn(exc, call):
                    immediate += 1
                    continue
            delay = self._pause(attempt, last, remaining=deadline - time.monotonic())
            if delay is None:
                break
            log.debug("retrying %s %s in %.3fs after %s", call.method, call.path, delay, last)
            await asyncio.sleep(delay)
            attempt, immediate = attempt + 1, 0
            if self._direct:
                await self._refresh(deadline=deadline)
        raise last or errors.Unavailable(f"deadline of {self._timeout}s passed", reason="deadline")

    def _pause(
        self, attempt: int, last: errors.KvError | None, *, remaining: float
    ) -> float | None:
        """How long to back off before the next attempt, or None to give up now: when the
        server asks for more time than is left, or too little is left for another attempt.
        Our own backoff is capped to half the time left, so the last attempt still has time."""
        retry_after = _retry_after(last)
        if (retry_after or 0.0) >= remaining or remaining < MIN_ATTEMPT_S * 2:
            return None
        own = min(self._routing.backoff(attempt), remaining / 2)
        return max(own, retry_after or 0.0)

    def _learn(self, exc: errors.KvError, call: _Call) -> bool:
        """Take what a redirect teaches; True when retrying at once is worthwhile."""
        partition = self._partition_of(call)
        if isinstance(exc, errors.NotLeader) and partition is not None:
            leader = exc.details.get("leader")
            if not (isinstance(leader, str) and self._routing.note_leader(partition, leader)):
                return False
            pmap = self._routing.pmap
            assert pmap is not None
            # a hint naming a node that gave no answer: back off for the election instead
            return not self._routing.suspected(pmap.node(leader).http_url)
        if isinstance(exc, errors.StaleEpoch):
            pmap = exc.details.get("map")
            return isinstance(pmap, Mapping) and self._routing.adopt_map(pmap)
        return False

    def _partition_of(self, call: _Call) -> int | None:
        if call.partition is not None:
            return call.partition
        return None if call.key is None else self._routing.partition(call.key)

    async def _target(
        self, call: _Call, *, deadline: float, avoid: str | None
    ) -> tuple[str, dict[str, str]]:
        """Where to send ``call`` and with which routing headers."""
        if not self._direct or (call.key is None and call.partition is None):
            return self._routing.any_node(), {}
        if self._routing.pmap is None:
            await self._refresh(deadline=deadline)
        partition = self._partition_of(call)
        pmap = self._routing.pmap
        if pmap is None or partition is None:
            return self._routing.any_node(), {}
        if call.leader:
            node = self._routing.leader(partition, avoid=avoid)
        else:
            node = self._routing.replica(partition)
        return node.http_url, {"X-Ringkv-Forward": "0", "X-Ringkv-Epoch": str(pmap.epoch)}

    async def _single_partition(self, ops: Sequence[BatchOp], *, deadline: float) -> int | None:
        """The one partition all of ``ops`` fall in (direct mode), else None (any node)."""
        if not self._direct:
            return None
        if self._routing.pmap is None:
            await self._refresh(deadline=deadline)
        parts = {self._routing.partition(op.key) for op in ops}
        return parts.pop() if len(parts) == 1 else None

    async def _refresh(self, *, deadline: float) -> bool:
        """Fetch ``/v1/cluster`` from the first node that answers; skip it if another task just
        did (many operations failing at once must not stampede the cluster)."""
        asked_at = time.monotonic()
        async with self._refresh_lock:
            if self._refreshed_at > asked_at:
                return True
            for url in self._routing.refresh_candidates():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                try:
                    _, body, _ = await self._http.call(
                        url, "GET", "/v1/cluster", timeout=min(remaining, REFRESH_TIMEOUT_S)
                    )
                except errors.KvError as exc:
                    log.debug("cluster refresh from %s failed: %s", url, exc)
                    continue
                if self._routing.adopt_cluster(body):
                    self._refreshed_at = time.monotonic()
                    return True
            return False


def client_tls(endpoints: Sequence[str], ca: str | ssl.SSLContext | None) -> ssl.SSLContext | None:
    """The context every node call verifies with: ``ca`` (a bundle path or a context), else the
    system trust store when an endpoint is ``https://``, else None (plain HTTP)."""
    if isinstance(ca, ssl.SSLContext):
        return ca
    if ca is not None:
        try:
            return tls.client_context(ca_file=ca)
        except OSError as exc:  # ssl.SSLError included
            raise errors.InvalidArgument(f"CA bundle {ca} is not usable: {exc}") from None
    if any(e.startswith("https://") for e in endpoints):
        return tls.client_context()
    return None


def _may_retry(exc: errors.KvError, call: _Call) -> bool:
    """Retriable errors only, and never a batch error whose results show an applied op."""
    if not exc.retriable:
        return False
    results = exc.details.get("results")
    if call.is_batch and isinstance(results, list):
        return not any(isinstance(r, dict) and r.get("applied") for r in results)
    return True


def _timeout_header(remaining: float) -> str:
    return f"{min(60.0, max(0.001, remaining * SERVER_DEADLINE_SHARE)):.3f}"


def _retry_after(exc: errors.KvError | None) -> float | None:
    raw = None if exc is None else exc.details.get("retry_after")
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return None
    return max(0.0, float(raw))
