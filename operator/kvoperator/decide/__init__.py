"""The reconcile policy as a pure function: ``decide(spec, observed, names) -> Decision``.

``policy`` holds the function and its reasoning; ``actions`` the values it returns."""

from kvoperator.decide.actions import (
    Action,
    ApplyObjects,
    Decision,
    DropStale,
    InstallMap,
    ReclaimVolumes,
    ReplaceReplicas,
    RestoreBackup,
    ResumeRebalance,
    RollPod,
    StartRebalance,
    UndrainNode,
)
from kvoperator.decide.policy import RETRY_AFTER_FAILURE_S, decide
from kvoperator.model.status import Condition

__all__ = [
    "RETRY_AFTER_FAILURE_S",
    "Action",
    "ApplyObjects",
    "Condition",
    "Decision",
    "DropStale",
    "InstallMap",
    "ReclaimVolumes",
    "ReplaceReplicas",
    "RestoreBackup",
    "ResumeRebalance",
    "RollPod",
    "StartRebalance",
    "UndrainNode",
    "decide",
]
