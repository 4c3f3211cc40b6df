"""Prometheus metrics of the HTTP API: request counts and latency per operation.

The label set is small and closed (``op`` is one of ``OPS``; ``code`` is the HTTP status) so a
scanner hitting random paths cannot blow up the series count.
"""

from __future__ import annotations

from typing import Any

import prometheus_client

OPS = ("get", "put", "delete", "batch", "list", "cluster", "admin", "other")

# 0.5 ms .. 10 s: a local strong read is ~1 ms, a write a few ms, a leaderless wait seconds.
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


class HttpMetrics:
    """The request counter and latency histogram, registered on the caller's registry (one per
    app, so tests and multiple apps in one process never collide on the global registry)."""

    def __init__(self, registry: prometheus_client.CollectorRegistry) -> None:
        self.requests = prometheus_client.Counter(
            "ringkv_http_requests_total",
            "HTTP requests answered, by operation and status code.",
            ["op", "code"],
            registry=registry,
        )
        self.latency = prometheus_client.Histogram(
            "ringkv_http_request_duration_seconds",
            "Time to answer an HTTP request, by operation.",
            ["op"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )

        # Labelled children by (op, status): ``labels()`` builds and looks up its key under a
        # lock on every call, a visible share of a request in the profile. The label set is
        # closed (``OPS`` x HTTP statuses), so the cache stays small.
        self._children: dict[tuple[str, int], tuple[Any, Any]] = {}

    def observe(self, op: str, *, status: int, seconds: float) -> None:
        child = self._children.get((op, status))
        if child is None:
            label = op if op in OPS else "other"
            child = (
                self.requests.labels(op=label, code=str(status)),
                self.latency.labels(op=label),
            )
            self._children[(op, status)] = child
        child[0].inc()
        child[1].observe(seconds)
