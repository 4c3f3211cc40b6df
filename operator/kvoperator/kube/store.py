"""The rebalance executor's state in a ConfigMap (``kvnode.rebalance.state.StateStore``).

The executor persists BEFORE it acts, so ``save`` is synchronous and returns only when the API
server stored the object (etcd-durable). It is one server-side apply of ~20 KB at 64 partitions,
~190 KB at 1000 (ConfigMaps hold up to 1 MiB), once per migration step, blocking the event loop
for that one call. The ConfigMap is owned by the KVCluster: deleting the cluster deletes it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from kvnode.rebalance import state as rstate

from kvoperator import manifests
from kvoperator.model import names as n
from kvoperator.model.names import ClusterNames

log = logging.getLogger(__name__)

Obj = dict[str, Any]


class ConfigMapStore:
    """``read``/``write`` are the synchronous get and apply of one ConfigMap (injected, so the
    in-memory fake and the real client share this code)."""

    def __init__(
        self,
        names: ClusterNames,
        owner: manifests.Owner,
        *,
        read: Callable[[str, str], Obj | None],
        write: Callable[[Obj], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._names = names
        self._owner = owner
        self._read = read
        self._write = write
        self._clock = clock

    def __str__(self) -> str:
        return f"configmap {self._names.namespace}/{self._names.state_configmap}"

    def save(self, state: rstate.RebalanceState) -> None:
        data = {n.STATE_KEY: rstate.encode(state), n.UPDATED_KEY: f"{self._clock():.3f}"}
        self._write(manifests.state_configmap(self._names, self._owner, data))

    def load(self) -> rstate.RebalanceState | None:
        loaded = load_configmap(self._read(self._names.namespace, self._names.state_configmap))
        return None if loaded is None else loaded[0]


def load_configmap(cm: Obj | None) -> tuple[rstate.RebalanceState, float] | None:
    """The state and its save time from a ConfigMap object; None if there is none; ValueError
    if it is unreadable (``kvnode.rebalance.state.decode``)."""
    if cm is None:
        return None
    data = cm.get("data") or {}
    raw = data.get(n.STATE_KEY)
    if raw is None:
        return None
    meta = cm.get("metadata") or {}
    source = f"configmap {meta.get('namespace')}/{meta.get('name')}"
    try:
        updated = float(data.get(n.UPDATED_KEY, "0"))
    except ValueError:
        updated = 0.0
    return rstate.decode(raw, source=source), updated
