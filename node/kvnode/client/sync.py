"""``SyncClient``: the blocking facade of ``Client`` for scripts and the CLI.

It owns a private event loop running in a daemon thread; each method submits the coroutine to
that loop and waits for it. The wait is bounded (twice the operation deadline plus a margin) so
a wedged loop can never hang a script forever.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine, Iterator, Sequence
from types import TracebackType
from typing import Any, TypeVar

from kvnode.client.client import Client
from kvnode.client.types import BatchOp, BatchResult, Deletion, Entry, Page
from kvnode.core import errors

T = TypeVar("T")

WAIT_MARGIN_S = 5.0


class SyncClient:
    """Blocking client with the same methods as ``Client``; use as a context manager."""

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        timeout: float = 5.0,
        direct: bool = True,
        token: str | None = None,
        ca_file: str | None = None,
    ) -> None:
        self._timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="ringkv-sync-client", daemon=True
        )
        self._thread.start()
        self._client = self._run(
            _make(endpoints, op_timeout=timeout, direct=direct, token=token, ca_file=ca_file)
        )

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout=2 * self._timeout + WAIT_MARGIN_S)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise errors.UnknownOutcome("the client's event loop did not answer in time") from None

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections and stop the loop thread (idempotent)."""
        if self._loop.is_closed():
            return
        try:
            self._run(self._client.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=WAIT_MARGIN_S)
            self._loop.close()

    def get(self, key: str, *, consistency: str = "strong") -> Entry | None:
        return self._run(self._client.get(key, consistency=consistency))

    def put(
        self,
        key: str,
        value: str,
        *,
        ttl: float | None = None,
        if_version: int | None = None,
        if_value: str | None = None,
    ) -> int:
        return self._run(
            self._client.put(key, value, ttl=ttl, if_version=if_version, if_value=if_value)
        )

    def delete(
        self, key: str, *, if_version: int | None = None, if_value: str | None = None
    ) -> bool:
        return self._run(self._client.delete(key, if_version=if_version, if_value=if_value))

    def delete_result(
        self, key: str, *, if_version: int | None = None, if_value: str | None = None
    ) -> Deletion:
        return self._run(self._client.delete_result(key, if_version=if_version, if_value=if_value))

    def cas(
        self,
        key: str,
        value: str,
        *,
        if_version: int | None = None,
        if_value: str | None = None,
        ttl: float | None = None,
    ) -> int:
        return self._run(
            self._client.cas(key, value, if_version=if_version, if_value=if_value, ttl=ttl)
        )

    def batch(self, ops: Sequence[BatchOp], *, atomic: bool = False) -> BatchResult:
        return self._run(self._client.batch(ops, atomic=atomic))

    def keys(
        self,
        prefix: str = "",
        *,
        limit: int = 100,
        cursor: str | None = None,
        consistency: str = "strong",
    ) -> Page:
        return self._run(
            self._client.keys(prefix, limit=limit, cursor=cursor, consistency=consistency)
        )

    def scan(
        self, prefix: str = "", *, consistency: str = "strong", page_size: int = 100
    ) -> Iterator[Entry]:
        """Every live entry under ``prefix``, fetching one page at a time as it is consumed."""
        cursor: str | None = None
        while True:
            page = self.keys(prefix, limit=page_size, cursor=cursor, consistency=consistency)
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def cluster(self) -> dict[str, Any]:
        return self._run(self._client.cluster())


async def _make(
    endpoints: Sequence[str],
    *,
    op_timeout: float,
    direct: bool,
    token: str | None,
    ca_file: str | None,
) -> Client:
    """Build the client inside the loop thread (its lock and session belong to that loop)."""
    return Client(endpoints, timeout=op_timeout, direct=direct, token=token, ca_file=ca_file)
