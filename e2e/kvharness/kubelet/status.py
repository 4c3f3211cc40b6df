"""Container state, restart policy and pod status, built the way the kubelet builds them.

Pure functions: the pod worker records what happened to its processes in `ContainerState`
values, and `pod_status` turns them into the `status` the API and its consumers (StatefulSet
controller, `kubectl wait`, `kubectl get pods`) read. Phase rules follow the kubelet's getPhase;
condition transition times are kept unless the condition's status changes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

JsonDict = dict[str, Any]


def rfc3339(ts: float) -> str:
    """API timestamp (seconds precision, UTC) for a `time.time()` value."""
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class Terminated:
    """One finished run of a container."""

    exit_code: int
    started_at: float
    finished_at: float
    reason: str = ""
    container_id: str = ""

    def to_api(self) -> JsonDict:
        reason = self.reason or ("Completed" if self.exit_code == 0 else "Error")
        return {
            "exitCode": self.exit_code,
            "reason": reason,
            "startedAt": rfc3339(self.started_at),
            "finishedAt": rfc3339(self.finished_at),
            "containerID": self.container_id,
        }


@dataclass(frozen=True, slots=True)
class ContainerState:
    """What the pod worker knows about one container; exactly one of the three states is set."""

    name: str
    image: str
    restart_count: int = 0
    running_since: float | None = None
    pid: int | None = None
    terminated: Terminated | None = None
    last_terminated: Terminated | None = None
    waiting_reason: str = "ContainerCreating"
    waiting_message: str = ""
    ready: bool = False
    started: bool = False

    @property
    def container_id(self) -> str:
        return f"process://{self.pid}" if self.pid else ""

    def to_api(self) -> JsonDict:
        if self.running_since is not None:
            state: JsonDict = {"running": {"startedAt": rfc3339(self.running_since)}}
        elif self.terminated is not None:
            state = {"terminated": self.terminated.to_api()}
        else:
            waiting = {"reason": self.waiting_reason}
            if self.waiting_message:
                waiting["message"] = self.waiting_message
            state = {"waiting": waiting}
        last = self.last_terminated.to_api() if self.last_terminated else None
        out: JsonDict = {
            "name": self.name,
            "image": self.image,
            "imageID": "",
            "ready": self.ready,
            "started": self.started,
            "restartCount": self.restart_count,
            "state": state,
            "lastState": {"terminated": last} if last else {},
        }
        if self.container_id:
            out["containerID"] = self.container_id
        return out


def should_restart(policy: str, exit_code: int) -> bool:
    """restartPolicy decision after a container exited with `exit_code`."""
    if policy == "Always":
        return True
    if policy == "OnFailure":
        return exit_code != 0
    return False


def backoff_delay(restart_count: int, *, base: float, cap: float) -> float:
    """Crash-loop back-off: first restart at once, then base, 2*base, ... up to cap."""
    if restart_count <= 0:
        return 0.0
    return float(min(cap, base * 2 ** (restart_count - 1)))


def pod_phase(policy: str, containers: Sequence[ContainerState]) -> str:
    """The kubelet's getPhase for regular containers."""
    running = waiting = stopped = succeeded = 0
    for c in containers:
        if c.running_since is not None:
            running += 1
        elif c.terminated is not None:
            stopped += 1
            succeeded += c.terminated.exit_code == 0
        elif c.last_terminated is not None:
            stopped += 1
        else:
            waiting += 1
    if waiting > 0:
        return "Pending"
    if running > 0:
        return "Running"
    if stopped > 0:
        if policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if policy == "Never":
            return "Failed"
        return "Running"
    return "Pending"


def _condition(ctype: str, ok: bool, reason: str, old: dict[str, JsonDict], now: str) -> JsonDict:
    status = "True" if ok else "False"
    prev = old.get(ctype)
    since = prev["lastTransitionTime"] if prev and prev.get("status") == status else now
    cond: JsonDict = {"type": ctype, "status": status, "lastTransitionTime": since}
    if prev and prev.get("lastProbeTime") is not None:
        cond["lastProbeTime"] = prev["lastProbeTime"]
    if not ok and reason:
        cond["reason"] = reason
    return cond


def _gates_ok(pod: JsonDict, old: dict[str, JsonDict]) -> bool:
    gates = pod.get("spec", {}).get("readinessGates", [])
    return all(old.get(g["conditionType"], {}).get("status") == "True" for g in gates)


def init_progress(policy: str, inits: Sequence[ContainerState]) -> tuple[bool, bool]:
    """(initialized, failed): all init containers succeeded / one failed for good (Never)."""
    initialized = all(c.terminated is not None and c.terminated.exit_code == 0 for c in inits)
    failed = policy == "Never" and any(
        c.terminated is not None and c.terminated.exit_code != 0 for c in inits
    )
    return initialized, failed


def pod_status(
    pod: JsonDict,
    containers: Sequence[ContainerState],
    *,
    init_containers: Sequence[ContainerState] = (),
    pod_ip: str,
    host_ip: str,
    start_time: float,
    now: float,
) -> JsonDict:
    """The full `status` for a strategic-merge patch of pods/<name>/status."""
    policy = pod.get("spec", {}).get("restartPolicy", "Always")
    initialized, init_failed = init_progress(policy, init_containers)
    if not initialized:
        containers = [
            replace(c, waiting_reason="PodInitializing")
            if c.running_since is None and c.terminated is None and c.last_terminated is None
            else c
            for c in containers
        ]
    phase = pod_phase(policy, containers)
    if init_failed:
        phase = "Failed"
    elif not initialized:
        phase = "Pending"
    old = {c["type"]: c for c in pod.get("status", {}).get("conditions", [])}
    ts = rfc3339(now)
    terminal = phase in ("Succeeded", "Failed")
    all_ready = bool(containers) and all(c.ready for c in containers) and not terminal
    not_ready_reason = "PodCompleted" if terminal else "ContainersNotReady"
    conditions = [
        _condition("PodReadyToStartContainers", True, "", old, ts),
        _condition("Initialized", initialized, "ContainersNotInitialized", old, ts),
        _condition("ContainersReady", all_ready, not_ready_reason, old, ts),
        _condition("Ready", all_ready and _gates_ok(pod, old), not_ready_reason, old, ts),
    ]
    return {
        "phase": phase,
        "conditions": conditions,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "startTime": rfc3339(start_time),
        "containerStatuses": [c.to_api() for c in containers],
        **(
            {"initContainerStatuses": [c.to_api() for c in init_containers]}
            if init_containers
            else {}
        ),
    }
