"""Where one partition's changes come from for a watcher: a local replica or a remote one.

Every replica records the same changes at the same log positions (``kvnode.watch.history``), so
a feed may read from any of them: the local replica when this node is in the map for the
partition, else the others over ``GET /v1/internal/watch`` (a bounded long-poll). A feed sticks
to the replica that last answered and moves on when it fails, is closed, has left the map or
does not keep the position any more; only when EVERY replica answers "compacted" is the position
lost (``Compacted``). Leader changes do not matter here: followers apply the same entries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from kvnode.client import NodeHttp
from kvnode.core import errors
from kvnode.core.model import PartitionMap
from kvnode.watch.history import ChangeHistory, Read
from kvnode.watch.model import Change, Position

log = logging.getLogger(__name__)

INTERNAL_PATH = "/v1/internal/watch"
MAX_WAIT_S = 5.0
"""Longest long-poll of the internal route (bounded so shutdown and failover stay quick)."""


class Histories(Protocol):
    """The node's local change histories (``GroupManager.history``)."""

    def history(self, partition: int) -> ChangeHistory | None: ...


@dataclass(frozen=True, slots=True)
class Batch:
    """Changes (each with its resume position) and where to continue."""

    changes: tuple[tuple[Change, Position], ...]
    position: Position


def read_to_json(read: Read) -> dict[str, Any]:
    """The internal route's answer for a local read (``compacted`` is raised, not returned)."""
    return {
        "changes": [c.to_dict(rev=rev) for c, rev in read.changes],
        "position": read.position.to_text(),
        "kept_after": read.kept_after,
        "last_index": read.last_index,
    }


def batch_from_json(body: dict[str, Any]) -> Batch:
    changes = tuple((Change.from_dict(c), Position.from_text(c["rev"])) for c in body["changes"])
    return Batch(changes, Position.from_text(str(body["position"])))


async def read_local(
    history: ChangeHistory, after: Position | None, *, prefix: str, max_bytes: int, wait_s: float
) -> Read:
    """Read ``history`` after ``after`` (None: from now, nothing returned), waiting up to
    ``wait_s`` for a change when there is none yet."""
    if after is None:
        now = Position(history.last_index)
        return Read((), now, history.kept_after, now.index)
    loop = asyncio.get_running_loop()
    woken: asyncio.Future[None] = loop.create_future()

    def settle() -> None:
        if not woken.done():
            woken.set_result(None)

    def wake() -> None:  # Raft ticker thread
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(settle)

    read = history.read(after, prefix=prefix, max_bytes=max_bytes, waker=wake if wait_s else None)
    if read.changes or read.compacted or read.closed or wait_s <= 0:
        return read
    try:
        await asyncio.wait_for(woken, wait_s)
    except TimeoutError:
        history.unregister(wake)
    return history.read(after, prefix=prefix, max_bytes=max_bytes)


class Feed:
    """Reads partition ``partition`` for one watcher, from whichever replica can serve it."""

    def __init__(
        self,
        partition: int,
        *,
        node_id: str,
        histories: Histories,
        current_map: Callable[[], PartitionMap | None],
        http: NodeHttp,
    ) -> None:
        self.partition = partition
        self._node_id = node_id
        self._histories = histories
        self._map = current_map
        self._http = http
        self._current: str | None = None

    @property
    def source(self) -> str | None:
        """Node id that served the last read."""
        return self._current

    def _candidates(self) -> list[str]:
        pmap = self._map()
        if pmap is None:
            raise errors.Unavailable("this node has no partition map yet", retry_after=1)
        replicas = list(pmap.replicas[self.partition])
        if self._node_id in replicas:  # local first: no network hop
            replicas.remove(self._node_id)
            replicas.insert(0, self._node_id)
        if self._current in replicas:
            replicas.remove(self._current)
            replicas.insert(0, self._current)
        return replicas

    async def fetch(
        self, after: Position | None, *, prefix: str, max_bytes: int, wait_s: float
    ) -> Batch:
        """Changes after ``after`` from the first replica that keeps it. Raises ``Compacted``
        when every replica answered so, ``Unavailable`` when none could answer."""
        compacted: list[str] = []
        failures: list[str] = []
        for node_id in self._candidates():
            try:
                batch = await self._fetch_from(node_id, after, prefix, max_bytes, wait_s)
            except errors.Compacted:
                compacted.append(node_id)
                continue
            except errors.KvError as exc:
                failures.append(f"{node_id}: {exc.message}")
                continue
            if batch is None:
                failures.append(f"{node_id}: replica closed")
                continue
            if node_id != self._current:
                log.info("watch: partition %d now read from %s", self.partition, node_id)
            self._current = node_id
            return batch
        self._current = None
        if compacted and not failures:
            kept = "" if after is None else after.to_text()
            raise errors.Compacted(
                f"partition {self.partition}: position {kept} is older than the change history "
                f"kept by every replica ({', '.join(compacted)})",
                partition=self.partition,
            )
        raise errors.Unavailable(
            f"partition {self.partition}: no replica could serve the watch: "
            + "; ".join(failures + [f"{n}: compacted" for n in compacted]),
            partition=self.partition,
            retry_after=1,
        )

    async def _fetch_from(
        self, node_id: str, after: Position | None, prefix: str, max_bytes: int, wait_s: float
    ) -> Batch | None:
        if node_id == self._node_id:
            history = self._histories.history(self.partition)
            if history is None:
                raise errors.NotOwner(f"partition {self.partition} is not hosted here")
            read = await read_local(
                history, after, prefix=prefix, max_bytes=max_bytes, wait_s=wait_s
            )
            if read.compacted:
                raise errors.Compacted("compacted", partition=self.partition)
            return None if read.closed else Batch(read.changes, read.position)
        pmap = self._map()
        assert pmap is not None
        params = {
            "partition": str(self.partition),
            "after": "now" if after is None else after.to_text(),
            "prefix": prefix,
            "wait_ms": str(int(min(wait_s, MAX_WAIT_S) * 1000)),
            "max_bytes": str(max_bytes),
        }
        _, body, _ = await self._http.call(
            pmap.node(node_id).http_url,
            "GET",
            INTERNAL_PATH,
            params=params,
            headers={"X-Ringkv-Forward": "0"},
            timeout=min(wait_s, MAX_WAIT_S) + 3.0,
        )
        try:
            return batch_from_json(body)
        except (KeyError, TypeError, ValueError) as exc:
            raise errors.Internal(f"bad watch answer from {node_id}: {exc}") from None
