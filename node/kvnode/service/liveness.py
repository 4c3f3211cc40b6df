"""Liveness of a node: is its shared Raft ticker thread still turning?

Every Raft group of the process is ticked by one thread (``kvnode.raft.ticker``). When that thread
dies or hangs (a callback blocked on a lock, a runaway snapshot), the HTTP side keeps answering
but no group heartbeats, elects or applies anything: the node is stuck and only a restart helps.
``/healthz`` therefore fails, so that a Kubernetes liveness probe restarts the pod, when the thread
is gone or has not started a loop iteration for longer than ``NodeSettings.ticker_stall_s``
(several election timeouts, so a slow tick under load never kills a healthy node).

Pure: the caller passes the thread's state and the clock reading.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Liveness:
    ok: bool
    reason: str | None
    """``ticker_dead`` or ``ticker_stalled`` when not ok."""
    message: str
    ticker_lag_s: float

    def to_dict(self, node_id: str) -> dict[str, Any]:
        """The ``/healthz`` body: ``status`` ok, or an error body (``code`` unavailable,
        ``message``, ``reason``) when failing; both carry the node id and the ticker lag."""
        base = {"node_id": node_id, "ticker_lag_s": round(self.ticker_lag_s, 3)}
        if self.ok:
            return {"status": "ok", **base}
        return {"code": "unavailable", "message": self.message, "reason": self.reason, **base}


def judge(*, alive: bool, last_loop_monotonic: float, now: float, max_lag_s: float) -> Liveness:
    """Liveness of a ticker that is ``alive`` and last began a loop at ``last_loop_monotonic``."""
    lag = max(0.0, now - last_loop_monotonic)
    if not alive:
        return Liveness(False, "ticker_dead", "the Raft ticker thread is not running", lag)
    if lag > max_lag_s:
        msg = f"the Raft ticker thread has not ticked for {lag:.1f}s (limit {max_lag_s:g}s)"
        return Liveness(False, "ticker_stalled", msg, lag)
    return Liveness(True, None, "the Raft ticker thread is running", lag)
