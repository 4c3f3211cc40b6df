"""Unit tests of the process kubelet's pure logic (no cluster, no processes).

They carry the `e2e` marker only because CI runs e2e/ with `-m e2e`; they need no control plane
and take well under a second. If the kubelet decides wrongly here, e2e tests of the operator
would pass or fail for the wrong reasons.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from kvharness.kubelet import envvars, images, logserver, probes

pytestmark = pytest.mark.e2e

POD: dict[str, Any] = {
    "metadata": {
        "name": "web-1",
        "namespace": "ns1",
        "uid": "u-1",
        "labels": {"app": "web", "tier": "db"},
        "annotations": {"a": "b"},
    },
    "spec": {"nodeName": "n1", "serviceAccountName": "sa", "hostname": "web-1", "subdomain": "web"},
    "status": {"podIP": "127.0.1.7", "hostIP": "127.0.0.1", "podIPs": [{"ip": "127.0.1.7"}]},
}


# ---- $(VAR) expansion ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$(A)", "alpha"),
        ("x-$(A)-$(B)", "x-alpha-beta"),
        ("$(MISSING)", "$(MISSING)"),
        ("$$(A)", "$(A)"),
        ("$$$(A)", "$alpha"),
        ("$$", "$"),
        ("$A", "$A"),
        ("$(A", "$(A"),
        ("cost $5", "cost $5"),
        ("trailing $", "trailing $"),
        ("$()", "$()"),
        ("", ""),
    ],
)
def test_expand_follows_kubernetes_semantics(text: str, expected: str) -> None:
    assert envvars.expand(text, {"A": "alpha", "B": "beta"}) == expected


def test_env_entries_expand_earlier_entries_and_field_refs() -> None:
    container = {
        "name": "c",
        "env": [
            {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "URL", "value": "http://$(IP):80/$(NAME)/$(LATER)"},
            {"name": "LATER", "value": "x"},
        ],
    }
    env = envvars.build_env(container, POD, config_maps=lambda _: None, secrets=lambda _: None)
    assert env == {
        "NAME": "web-1",
        "IP": "127.0.1.7",
        "URL": "http://127.0.1.7:80/web-1/$(LATER)",
        "LATER": "x",
    }


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("metadata.name", "web-1"),
        ("metadata.namespace", "ns1"),
        ("metadata.uid", "u-1"),
        ("metadata.labels['tier']", "db"),
        ("metadata.annotations['a']", "b"),
        ("spec.nodeName", "n1"),
        ("spec.serviceAccountName", "sa"),
        ("status.podIP", "127.0.1.7"),
        ("status.podIPs", "127.0.1.7"),
        ("status.hostIP", "127.0.0.1"),
        ("metadata.labels", 'app="web"\ntier="db"'),
    ],
)
def test_field_refs(path: str, value: str) -> None:
    assert envvars.field_ref(POD, path) == value


def test_unknown_field_ref_is_refused() -> None:
    with pytest.raises(envvars.UnsupportedSpec):
        envvars.field_ref(POD, "spec.containers")


def test_config_map_and_secret_refs_and_env_from() -> None:
    cm = {"data": {"K": "v", "X": "1"}}
    secret = {"data": {"PW": base64.b64encode(b"s3cret").decode()}}
    container = {
        "name": "c",
        "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"}],
        "env": [
            {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "s", "key": "PW"}}},
            {"name": "K", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "K"}}},
            {
                "name": "OPT",
                "valueFrom": {"configMapKeyRef": {"name": "no", "key": "K", "optional": True}},
            },
        ],
    }
    env = envvars.build_env(
        container,
        POD,
        config_maps=lambda n: cm if n == "cm" else None,
        secrets=lambda n: secret if n == "s" else None,
    )
    assert env == {"CM_K": "v", "CM_X": "1", "PW": "s3cret", "K": "v"}


def test_command_line_expands_and_requires_a_command() -> None:
    container = {"name": "c", "command": ["run", "$(A)"], "args": ["--x=$(B)", "$$(A)"]}
    argv = images.command_line(container, images.HOST_IMAGE, {"A": "1", "B": "2"})
    assert argv == ["run", "1", "--x=2", "$(A)"]
    # The host image has no ENTRYPOINT/CMD: without command and args nothing can run.
    with pytest.raises(envvars.UnsupportedSpec, match="no command"):
        images.command_line({"name": "c", "image": "busybox"}, images.HOST_IMAGE, {})


# ---- probes ----------------------------------------------------------------------------
def test_probe_defaults_and_parse() -> None:
    spec = probes.ProbeSpec.parse({"httpGet": {"path": "/", "port": 80}})
    assert spec is not None
    assert (spec.kind, spec.period, spec.timeout, spec.failure_threshold) == ("httpGet", 10, 1, 3)
    assert probes.ProbeSpec.parse(None) is None
    with pytest.raises(ValueError, match="unsupported"):
        probes.ProbeSpec.parse({"grpc": {"port": 1}})


def test_readiness_needs_success_threshold_and_flips_after_failure_threshold() -> None:
    spec = probes.ProbeSpec("exec", {}, success_threshold=2, failure_threshold=2)
    st = probes.initial_state("readiness")
    assert not st.healthy
    st = probes.advance(spec, st, ok=True, now=1)
    assert not st.healthy
    st = probes.advance(spec, st, ok=True, now=2)
    assert st.healthy
    st = probes.advance(spec, st, ok=False, now=3)
    assert st.healthy
    st = probes.advance(spec, st, ok=True, now=4)
    st = probes.advance(spec, st, ok=False, now=5)
    assert st.healthy  # failures are consecutive only
    st = probes.advance(spec, st, ok=False, now=6)
    assert not st.healthy


def test_liveness_starts_healthy() -> None:
    spec = probes.ProbeSpec("tcpSocket", {}, failure_threshold=1)
    st = probes.initial_state("liveness")
    assert st.healthy
    assert not probes.advance(spec, st, ok=False, now=1).healthy


def test_probe_schedule_honours_initial_delay_and_period() -> None:
    spec = probes.ProbeSpec("exec", {}, initial_delay=5, period=2)
    st = probes.initial_state("readiness")
    assert not probes.is_due(spec, st, started_at=100, now=104)
    assert probes.is_due(spec, st, started_at=100, now=105)
    st = probes.advance(spec, st, ok=True, now=105)
    assert not probes.is_due(spec, st, started_at=100, now=106)
    assert probes.is_due(spec, st, started_at=100, now=107)


def test_named_ports() -> None:
    ports = [{"name": "http", "containerPort": 8080}]
    assert probes.resolve_port("http", ports) == 8080
    assert probes.resolve_port(81, ports) == 81
    assert probes.resolve_port("82", ports) == 82
    with pytest.raises(ValueError, match="named port"):
        probes.resolve_port("nope", ports)


def test_http_and_tcp_checks_fail_cleanly_on_closed_port() -> None:
    action = {"port": 1, "path": "/"}
    assert not probes.check_http(action, pod_ip="127.0.0.1", ports=[], timeout=0.5)
    assert not probes.check_tcp(action, pod_ip="127.0.0.1", ports=[], timeout=0.5)


# ---- kubectl logs endpoint -------------------------------------------------------------
def test_log_selection() -> None:
    data = b"a\nb\nc\n"
    assert logserver.select(data, tail_lines=None, limit_bytes=None) == data
    assert logserver.select(data, tail_lines=2, limit_bytes=None) == b"b\nc\n"
    assert logserver.select(data, tail_lines=0, limit_bytes=None) == b""
    assert logserver.select(data, tail_lines=2, limit_bytes=3) == b"b\nc"


def test_log_path_rejects_traversal(tmp_path: Path) -> None:
    assert logserver.log_path(tmp_path, "/containerLogs/ns/p/c") == tmp_path / "ns_p_c.log"
    assert logserver.log_path(tmp_path, "/containerLogs/ns/../c") is None
    assert logserver.log_path(tmp_path, "/containerLogs/ns/p") is None
    assert logserver.log_path(tmp_path, "/other/ns/p/c") is None
