"""The client's routing knowledge: the partition map, leader hints, and where to send what.

Plain state with no I/O, so the retry loop in ``Client`` stays readable and the choices are
easy to test. Only newer information replaces older: a map is adopted only if its epoch is not
older than the one held, and leader hints only for nodes the map knows.

A node that gave no answer within an attempt (paused, cut off, dead) is *suspected* for a few
seconds: every choice prefers another node meanwhile, so the next attempts and operations do not
wait on it again while the cluster elects a new leader. Suspicion is only a preference: with no
other candidate the suspect is still tried, and any answer from it clears it.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Mapping, Sequence
from typing import Any

from kvnode.core.hashing import partition_of
from kvnode.core.model import NodeInfo, PartitionMap

log = logging.getLogger(__name__)

BACKOFF_BASE_S = 0.05
BACKOFF_CAP_S = 1.0
SUSPECT_S = 2.0
"""How long a node that gave no answer is avoided: about one (default) election timeout, so the
partitions it led have a new leader by then; short, because a leader that was only slow is
avoided for that long too."""


def _now(now: float | None) -> float:
    return time.monotonic() if now is None else now


def attempt_budget(remaining: float, cap: float) -> float:
    """Time one attempt may take: ``cap``, or all that is left of the deadline when less.

    Why capped: an attempt to a paused or cut-off node never answers, and with the whole
    deadline it would hold the operation until the deadline instead of failing over."""
    return max(0.0, min(remaining, cap))


class Routing:
    """Partition map + leader hints, learnt from ``/v1/cluster`` and from errors."""

    def __init__(self, endpoints: Sequence[str], *, rng: random.Random | None = None) -> None:
        if not endpoints:
            raise ValueError("at least one endpoint is required")
        self.endpoints = tuple(e.rstrip("/") for e in endpoints)
        self.pmap: PartitionMap | None = None
        self.leaders: dict[int, str | None] = {}
        self._rng = rng or random.Random()
        self._next = 0
        self._next_refresh = 0
        self._suspects: dict[str, float] = {}  # url -> monotonic time the suspicion ends

    # ------------------------------------------------------------ suspicion

    def suspect(self, url: str, *, now: float | None = None, for_s: float = SUSPECT_S) -> None:
        """``url`` gave no answer: prefer other nodes until ``now + for_s``."""
        self._suspects[url.rstrip("/")] = _now(now) + for_s

    def vouch(self, url: str) -> None:
        """``url`` answered: no longer suspected."""
        self._suspects.pop(url.rstrip("/"), None)

    def suspected(self, url: str, *, now: float | None = None) -> bool:
        now = _now(now)
        until = self._suspects.get(url.rstrip("/"))
        if until is None:
            return False
        if until <= now:
            del self._suspects[url.rstrip("/")]
            return False
        return True

    def _preferred(self, urls: Sequence[str], *, now: float, avoid: str | None) -> list[str]:
        """``urls`` minus ``avoid`` and the suspects, in order; if that leaves none, minus
        ``avoid`` only; if that leaves none, all of them."""
        others = [u for u in urls if u != avoid]
        return [u for u in others if not self.suspected(u, now=now)] or others or list(urls)

    # ------------------------------------------------------------ learning

    def adopt_cluster(self, info: Mapping[str, Any]) -> bool:
        """Take the map and leaders of a ``/v1/cluster`` answer; False if it had no usable map."""
        raw_map = info.get("map")
        if not isinstance(raw_map, Mapping) or not self.adopt_map(raw_map):
            return False
        leaders = info.get("leaders")
        if isinstance(leaders, Mapping):
            for part, node_id in leaders.items():
                if str(part).isdigit():
                    self.note_leader(int(part), node_id if isinstance(node_id, str) else None)
        return True

    def adopt_map(self, raw: Mapping[str, Any]) -> bool:
        """Adopt ``raw`` unless it is malformed or older than the map held."""
        try:
            pmap = PartitionMap.from_dict(raw)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("ignoring malformed partition map from a node: %s", exc)
            return False
        if self.pmap is not None and pmap.epoch < self.pmap.epoch:
            return False
        if self.pmap is None or pmap.epoch > self.pmap.epoch:
            log.debug("client adopts partition map epoch=%d", pmap.epoch)
            self.leaders = {
                p: node_id
                for p, node_id in self.leaders.items()
                if node_id is not None and p < pmap.partitions and node_id in pmap.replicas[p]
            }
        self.pmap = pmap
        return True

    def note_leader(self, partition: int, node_id: str | None) -> bool:
        """Record a leader hint; False when the hint names a node our map does not know."""
        if self.pmap is None or not 0 <= partition < self.pmap.partitions:
            return False
        if node_id is not None and not self.pmap.has_node(node_id):
            return False
        self.leaders[partition] = node_id
        return True

    # ------------------------------------------------------------ choosing

    def partition(self, key: str) -> int | None:
        return None if self.pmap is None else partition_of(key, self.pmap.partitions)

    def leader(
        self, partition: int, *, avoid: str | None = None, now: float | None = None
    ) -> NodeInfo:
        """The known leader, else the preferred leader (first replica). ``avoid`` (a URL that
        just failed) and suspected nodes are skipped when another replica exists."""
        assert self.pmap is not None
        now = _now(now)
        hint = self.leaders.get(partition)
        replicas = self.pmap.replicas_of(partition)
        if hint is not None:
            url = self.pmap.node(hint).http_url
            if url != avoid and not self.suspected(url, now=now):
                return self.pmap.node(hint)
        first = self._preferred([n.http_url for n in replicas], now=now, avoid=avoid)[0]
        return next(n for n in replicas if n.http_url == first)

    def replica(self, partition: int, *, now: float | None = None) -> NodeInfo:
        """Any replica not suspected (eventual reads spread over them)."""
        assert self.pmap is not None
        now = _now(now)
        replicas = self.pmap.replicas_of(partition)
        urls = self._preferred([n.http_url for n in replicas], now=now, avoid=None)
        return self._rng.choice([n for n in replicas if n.http_url in urls])

    def any_node(self, *, now: float | None = None) -> str:
        """Round-robin over the configured endpoints (requests any node can serve), skipping
        suspected ones while another is left."""
        now = _now(now)
        for _ in range(len(self.endpoints)):
            url = self.endpoints[self._next % len(self.endpoints)]
            self._next += 1
            if not self.suspected(url, now=now):
                return url
        url = self.endpoints[self._next % len(self.endpoints)]
        self._next += 1
        return url

    def refresh_candidates(self, *, now: float | None = None) -> list[str]:
        """Where to fetch ``/v1/cluster``: the endpoints (rotating) then every mapped node."""
        start = self._next_refresh % len(self.endpoints)
        self._next_refresh += 1
        urls = list(self.endpoints[start:] + self.endpoints[:start])
        if self.pmap is not None:
            urls += [n.http_url for n in self.pmap.nodes if n.http_url not in urls]
        now = _now(now)
        return sorted(urls, key=lambda u: self.suspected(u, now=now))  # stable: suspects last

    def backoff(self, attempt: int, *, retry_after: float | None = None) -> float:
        """Exponential backoff with jitter (half to full), at least the server's retry_after."""
        ceiling = min(BACKOFF_CAP_S, BACKOFF_BASE_S * (2**attempt))
        delay = self._rng.uniform(ceiling / 2, ceiling)
        return max(delay, retry_after or 0.0)
