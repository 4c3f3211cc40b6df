"""Operator settings from RINGKV_OPERATOR_* variables."""

from __future__ import annotations

import pytest
from kvoperator.settings import OperatorSettings


def test_defaults_without_environment() -> None:
    s = OperatorSettings.from_env({})
    assert s == OperatorSettings()
    assert s.namespaces == ()
    assert s.metrics_port == 9090


def test_values_are_parsed_by_type() -> None:
    s = OperatorSettings.from_env(
        {
            "RINGKV_OPERATOR_NAMESPACES": "team-a, team-b,",
            "RINGKV_OPERATOR_METRICS_PORT": "9100",
            "RINGKV_OPERATOR_BUSY_INTERVAL_S": "0.5",
            "RINGKV_OPERATOR_DEFAULT_IMAGE": "ringkv:9",
            "UNRELATED": "x",
        }
    )
    assert s.namespaces == ("team-a", "team-b")
    assert s.metrics_port == 9100
    assert s.busy_interval_s == 0.5
    assert s.default_image == "ringkv:9"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RINGKV_OPERATOR_METRICS_PORT": "abc"}, "RINGKV_OPERATOR_METRICS_PORT='abc' is not"),
        ({"RINGKV_OPERATOR_METRICS_PORT": "40000"}, "below the ephemeral range"),
        ({"RINGKV_OPERATOR_REBALANCE_CONCURRENCY": "0"}, "rebalance_concurrency"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        OperatorSettings.from_env(env)
