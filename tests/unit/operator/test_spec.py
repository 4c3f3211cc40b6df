"""KVCluster spec parsing: defaults, and readable errors naming every bad field at once."""

from __future__ import annotations

import pytest
from kvoperator.model.spec import (
    DEFAULT_ZONE_LABEL,
    ClusterSpec,
    Durability,
    ReclaimPolicy,
    SpecError,
    parse_spec,
)


def parse(raw: object) -> ClusterSpec:
    return parse_spec(raw, default_image="ringkv:test")  # type: ignore[arg-type]


def test_empty_spec_gets_every_default() -> None:
    spec = parse(None)
    assert spec.replicas == 3
    assert spec.partitions == 16
    assert spec.replication_factor == 3
    assert spec.image == "ringkv:test"
    assert spec.storage.size == "1Gi"
    assert spec.storage.storage_class_name is None
    assert spec.storage.reclaim_policy is ReclaimPolicy.RETAIN
    assert spec.durability is Durability.PROCESS
    assert spec.paused is False
    assert spec.scheduling.zone_label == DEFAULT_ZONE_LABEL
    assert spec.scheduling.tolerations == ()
    assert parse({}) == spec


def test_full_spec_is_read_as_given() -> None:
    spec = parse(
        {
            "replicas": 5,
            "partitions": 64,
            "replicationFactor": 5,
            "image": "registry/ringkv:1.2",
            "resources": {"requests": {"cpu": "500m"}},
            "storage": {"size": "20Gi", "storageClassName": "fast", "reclaimPolicy": "delete"},
            "durability": "fsync",
            "paused": True,
            "scheduling": {
                "tolerations": [{"key": "dedicated", "operator": "Exists"}],
                "zoneLabel": "example.com/zone",
                "affinity": {"nodeAffinity": {}},
            },
        }
    )
    assert (spec.replicas, spec.partitions, spec.replication_factor) == (5, 64, 5)
    assert spec.image == "registry/ringkv:1.2"
    assert spec.resources == {"requests": {"cpu": "500m"}}
    assert spec.storage.reclaim_policy is ReclaimPolicy.DELETE
    assert spec.storage.storage_class_name == "fast"
    assert spec.durability is Durability.FSYNC
    assert spec.paused is True
    assert spec.scheduling.zone_label == "example.com/zone"
    assert spec.scheduling.tolerations == ({"key": "dedicated", "operator": "Exists"},)
    assert spec.scheduling.affinity == {"nodeAffinity": {}}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"replicas": 2}, "spec.replicas: 2 is below spec.replicationFactor 3"),
        ({"replicas": "three"}, "spec.replicas: must be an integer, got 'three'"),
        ({"replicas": True}, "spec.replicas: must be an integer, got True"),
        ({"partitions": 0}, "spec.partitions: must be between 1 and 1024, got 0"),
        ({"replicationFactor": 9, "replicas": 9}, "spec.replicationFactor: must be between 1"),
        ({"durability": "never"}, "spec.durability: must be one of process, fsync, got 'never'"),
        ({"storage": {"reclaimPolicy": "keep"}}, "spec.storage.reclaimPolicy: must be one of"),
        ({"storage": {"size": "lots"}}, "spec.storage.size: 'lots' is not a quantity"),
        ({"storage": "big"}, "spec.storage: must be an object, got str"),
        ({"paused": "yes"}, "spec.paused: must be true or false, got 'yes'"),
        ({"scheduling": {"tolerations": "x"}}, "spec.scheduling.tolerations: must be a list"),
    ],
)
def test_bad_specs_are_named_by_field(raw: dict[str, object], message: str) -> None:
    with pytest.raises(SpecError) as e:
        parse(raw)
    assert message in str(e.value)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(SpecError) as e:
        parse({"replicas": "x", "partitions": -1, "durability": "never"})
    assert len(e.value.problems) == 3
    assert str(e.value).startswith("invalid KVCluster spec: ")


def test_no_image_and_no_default_is_an_error() -> None:
    with pytest.raises(SpecError, match=r"spec\.image: not set"):
        parse_spec({}, default_image="")


def test_the_example_cluster_is_valid() -> None:
    from pathlib import Path

    import yaml

    example = Path(__file__).resolve().parents[3] / "examples" / "kvcluster.yaml"
    doc = yaml.safe_load(example.read_text())
    assert doc["kind"] == "KVCluster"
    spec = parse(doc["spec"])
    assert spec.replicas == 3
    assert spec.storage.reclaim_policy is ReclaimPolicy.DELETE


def test_replacement_defaults_and_durations() -> None:
    s = parse_spec({}, default_image="img")
    assert s.replacement.after_s == 600.0
    assert s.replacement.max_concurrent == 2
    s = parse_spec({"replacement": {"after": "1h30m20s", "maxConcurrent": 4}}, default_image="i")
    assert s.replacement.after_s == 5420.0
    assert s.replacement.max_concurrent == 4
    assert (
        parse_spec({"replacement": {"after": "20s"}}, default_image="i").replacement.after_s == 20
    )


@pytest.mark.parametrize("after", ["", "10", "1.5m", "0s", "ten minutes"])
def test_a_bad_replacement_delay_is_named(after: str) -> None:
    with pytest.raises(SpecError, match=r"spec.replacement.after"):
        parse_spec({"replacement": {"after": after}}, default_image="i")
