"""The process kubelet's binding rule for a cordoned node (`kubectl cordon`): only pods that
tolerate the `node.kubernetes.io/unschedulable` taint are bound, as the scheduler does."""

from __future__ import annotations

from typing import Any

import pytest
from kvharness.kubelet.node import tolerates_unschedulable

pytestmark = pytest.mark.e2e


def pod(*tolerations: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "p"}, "spec": {"tolerations": list(tolerations)}}


@pytest.mark.parametrize(
    ("tolerations", "bound"),
    [
        ((), False),
        (({"key": "other", "operator": "Exists"},), False),
        (
            (
                {
                    "key": "node.kubernetes.io/unschedulable",
                    "operator": "Exists",
                    "effect": "NoSchedule",
                },
            ),
            True,
        ),
        (({"key": "node.kubernetes.io/unschedulable", "effect": "NoExecute"},), False),
        (({"operator": "Exists"},), True),  # tolerates every taint
    ],
)
def test_a_cordoned_node_binds_only_pods_tolerating_it(
    tolerations: tuple[dict[str, Any], ...], bound: bool
) -> None:
    assert tolerates_unschedulable(pod(*tolerations)) is bound
