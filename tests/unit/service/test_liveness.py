"""Liveness verdict of the shared Raft ticker (pure) and NodeService.health over fake groups."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from kvnode.service import liveness
from kvnode.settings import NodeSettings


def test_running_ticker_is_alive() -> None:
    v = liveness.judge(alive=True, last_loop_monotonic=100.0, now=100.2, max_lag_s=10.0)
    assert v.ok
    assert v.reason is None
    assert v.to_dict("n1") == {"status": "ok", "node_id": "n1", "ticker_lag_s": 0.2}


def test_dead_ticker_fails_at_once() -> None:
    v = liveness.judge(alive=False, last_loop_monotonic=100.0, now=100.0, max_lag_s=10.0)
    assert not v.ok
    assert v.reason == "ticker_dead"
    body = v.to_dict("n1")
    assert body["code"] == "unavailable"
    assert body["reason"] == "ticker_dead"
    assert "not running" in body["message"]


@pytest.mark.parametrize(("lag", "ok"), [(9.9, True), (10.0, True), (10.1, False), (60, False)])
def test_stall_bound(lag: float, ok: bool) -> None:
    v = liveness.judge(alive=True, last_loop_monotonic=50.0, now=50.0 + lag, max_lag_s=10.0)
    assert v.ok is ok
    if not ok:
        assert v.reason == "ticker_stalled"
        assert "10s" in v.message


def test_clock_behind_last_loop_is_no_lag() -> None:
    v = liveness.judge(alive=True, last_loop_monotonic=5.0, now=4.0, max_lag_s=1.0)
    assert v.ok
    assert v.ticker_lag_s == 0.0


def test_stall_threshold_must_exceed_election_timeout() -> None:
    with pytest.raises(ValueError, match="ticker_stall_s"):
        NodeSettings.from_env(
            {"KVNODE_NODE_ID": "n", "KVNODE_DATA_DIR": "/tmp/x", "KVNODE_TICKER_STALL_S": "2"}
        )
    env = {"KVNODE_NODE_ID": "n", "KVNODE_DATA_DIR": "/tmp/x", "KVNODE_TICKER_STALL_S": "30"}
    assert NodeSettings.from_env(env).ticker_stall_s == 30.0


def test_node_service_health_reads_the_ticker(tmp_path: object) -> None:
    from kvnode.service.forward import Forwarder
    from kvnode.service.node import NodeService

    from tests.unit.service.fakes import FakeGroups

    groups = FakeGroups(me="n1")
    settings = NodeSettings(node_id="n1", data_dir=str(tmp_path), ticker_stall_s=5.0)
    svc = NodeService(settings=settings, groups=groups, forwarder=Forwarder(None))  # type: ignore[arg-type]
    assert svc.health()[0]
    groups.ticker = SimpleNamespace(alive=True, last_loop_monotonic=time.monotonic() - 6.0)
    ok, body = svc.health()
    assert not ok
    assert body["reason"] == "ticker_stalled"
    groups.ticker = SimpleNamespace(alive=False, last_loop_monotonic=time.monotonic())
    assert svc.health()[1]["reason"] == "ticker_dead"
