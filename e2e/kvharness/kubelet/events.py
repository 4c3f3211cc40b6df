"""Pod events as the kubelet records them, so `kubectl describe pod` and `kubectl get events`
explain what the process kubelet did (Scheduled, Started, Killing, Unhealthy, BackOff, Failed).

Best effort, like the real event recorder: a failed POST is logged, never raised. Repeats of the
same (pod, reason, message) within `min_interval` seconds are dropped, standing in for the
recorder's aggregation so a failing 1 s probe does not flood the API.
"""

from __future__ import annotations

import logging
from typing import Any

from kvharness.kube import ApiError, Kube
from kvharness.kubelet.status import rfc3339

log = logging.getLogger(__name__)
JsonDict = dict[str, Any]


def event_object(
    pod: JsonDict,
    reason: str,
    message: str,
    *,
    warning: bool,
    component: str,
    host: str,
    now: float,
) -> JsonDict:
    """A core/v1 Event about `pod` (pure)."""
    meta = pod["metadata"]
    ts = rfc3339(now)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
        },
        "reason": reason,
        "message": message,
        "type": "Warning" if warning else "Normal",
        "source": {"component": component, "host": host},
        "firstTimestamp": ts,
        "lastTimestamp": ts,
        "count": 1,
    }


class EventRecorder:
    """Posts events; drops repeats of the same pod/reason/message within `min_interval`."""

    def __init__(self, kube: Kube, *, host: str, min_interval: float = 10.0) -> None:
        self._kube = kube
        self._host = host
        self._min_interval = min_interval
        self._last: dict[tuple[str, str, str], float] = {}

    def record(
        self, pod: JsonDict, reason: str, message: str, *, warning: bool, now: float,
        component: str = "kubelet",
    ) -> None:  # fmt: skip
        key = (pod["metadata"]["uid"], reason, message)
        if now - self._last.get(key, -1e18) < self._min_interval:
            return
        self._last[key] = now
        body = event_object(
            pod, reason, message, warning=warning, component=component, host=self._host, now=now
        )
        try:
            self._kube.create(f"/api/v1/namespaces/{pod['metadata']['namespace']}/events", body)
        except (ApiError, OSError) as exc:
            log.warning("could not record event %s for %s: %s", reason, key[0], exc)

    def forget(self, uid: str) -> None:
        """Drop the de-duplication state of a pod that is gone."""
        self._last = {k: v for k, v in self._last.items() if k[0] != uid}
