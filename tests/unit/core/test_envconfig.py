"""The one environment parser behind NodeSettings and OperatorSettings."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from kvnode.core import envconfig
from kvnode.settings import NodeSettings


@dataclass(frozen=True, slots=True)
class Example:
    name: str
    port: int = 7000
    ratio: float = 0.5
    zone: str | None = "a"
    namespaces: tuple[str, ...] = ()


def test_defaults_kept_and_values_typed() -> None:
    got = envconfig.from_env(
        Example,
        {"X_NAME": "n1", "X_RATIO": " 2.5 ", "X_NAMESPACES": "a, b,,c", "OTHER": "1"},
        prefix="X_",
    )
    assert got == Example(name="n1", port=7000, ratio=2.5, zone="a", namespaces=("a", "b", "c"))


def test_empty_optional_is_none() -> None:
    assert envconfig.from_env(Example, {"X_NAME": "n", "X_ZONE": ""}, prefix="X_").zone is None


def test_required_field_missing_names_the_variable() -> None:
    with pytest.raises(ValueError, match="X_NAME is required"):
        envconfig.from_env(Example, {}, prefix="X_")


def test_malformed_number_names_the_variable_and_type() -> None:
    with pytest.raises(ValueError, match=r"X_PORT='70x0' is not a valid int"):
        envconfig.from_env(Example, {"X_NAME": "n", "X_PORT": "70x0"}, prefix="X_")


def test_node_settings_parse_and_validate() -> None:
    s = NodeSettings.from_env(
        {"KVNODE_NODE_ID": "node-1", "KVNODE_DATA_DIR": "/d", "KVNODE_HTTP_PORT": "7001"}
    )
    assert (s.node_id, s.http_port, s.zone) == ("node-1", 7001, None)
    with pytest.raises(ValueError, match="DURABILITY"):
        NodeSettings.from_env(
            {"KVNODE_NODE_ID": "n", "KVNODE_DATA_DIR": "/d", "KVNODE_DURABILITY": "maybe"}
        )
