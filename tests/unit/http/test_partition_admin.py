"""The partition admin routes (``/v1/admin/partitions/{p}/...``): parsing, statuses, streaming."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import prometheus_client
import pytest
from kvnode.core import errors
from kvnode.http.app import make_app

from tests.unit.http.conftest import Client
from tests.unit.http.fake_service import FakeService


class FakeAdmin:
    """Records calls; ``fail`` makes the next call raise."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.fail: errors.KvError | None = None

    def _record(self, *call: Any) -> None:
        self.calls.append(call)
        if self.fail is not None:
            err, self.fail = self.fail, None
            raise err

    def replica_state(self, partition: int) -> dict[str, Any]:
        self._record("state", partition)
        return {"partition": partition, "hosted": False}

    async def seed_stream(self, partition: int) -> tuple[dict[str, Any], AsyncIterator[bytes]]:
        self._record("seed", partition)

        async def body() -> AsyncIterator[bytes]:
            for chunk in (b"abc", b"def"):
                yield chunk

        return {"raft_index": 7, "store_applied": 5}, body()

    async def join(self, partition: int, *, source: str) -> dict[str, Any]:
        self._record("join", partition, source)
        return {"partition": partition, "already_hosted": False, "bytes": 6}

    async def change_member(
        self, partition: int, *, add: str | None, remove: str | None, timeout: float
    ) -> dict[str, Any]:
        self._record("members", partition, add, remove, timeout)
        return {"partition": partition, "changed": True, "members": []}

    async def transfer_leader(self, partition: int, *, to: str, timeout: float) -> dict[str, Any]:
        self._record("leader", partition, to)
        return {"partition": partition, "leader_id": to}

    async def start_digest(self, partition: int, *, timeout: float) -> dict[str, Any]:
        self._record("start_digest", partition)
        return {"partition": partition, "index": 42}

    def digest(self, partition: int, index: int) -> dict[str, Any]:
        self._record("digest", partition, index)
        return {"partition": partition, "index": index, "digest": None}

    async def drop(self, partition: int) -> dict[str, Any]:
        self._record("drop", partition)
        return {"partition": partition, "dropped": True}


@pytest.fixture
def admin() -> FakeAdmin:
    return FakeAdmin()


@pytest.fixture
async def aclient(
    aiohttp_client: Callable[..., Awaitable[Client]], service: FakeService, admin: FakeAdmin
) -> Client:
    app = make_app(service, registry=prometheus_client.CollectorRegistry(), admin=admin)
    return await aiohttp_client(app)


async def test_each_route_reaches_the_admin(aclient: Client, admin: FakeAdmin) -> None:
    base = "/v1/admin/partitions/3"
    assert (await aclient.get(base)).status == 200
    assert (await aclient.post(base + "/join", json={"source": "node-1"})).status == 200
    resp = await aclient.post(
        base + "/members", json={"add": "node-4"}, headers={"X-Ringkv-Timeout": "7"}
    )
    assert resp.status == 200
    assert (await aclient.post(base + "/members", json={"remove": "node-0"})).status == 200
    assert (await aclient.post(base + "/leader", json={"node_id": "node-2"})).status == 200
    assert (await (await aclient.post(base + "/digest")).json())["index"] == 42
    assert (await aclient.get(base + "/digest?index=42")).status == 200
    assert (await aclient.delete(base)).status == 200
    assert [c[0] for c in admin.calls] == [
        "state",
        "join",
        "members",
        "members",
        "leader",
        "start_digest",
        "digest",
        "drop",
    ]
    assert admin.calls[1] == ("join", 3, "node-1")
    assert admin.calls[2] == ("members", 3, "node-4", None, 7.0)
    assert admin.calls[3][2:4] == (None, "node-0")
    assert admin.calls[6] == ("digest", 3, 42)


async def test_snapshot_is_streamed_with_its_position(aclient: Client) -> None:
    resp = await aclient.get("/v1/admin/partitions/0/snapshot")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/octet-stream"
    assert resp.headers["X-Ringkv-Raft-Index"] == "7"
    assert await resp.read() == b"abcdef"


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("GET", "/v1/admin/partitions/x", None, "partition"),
        ("GET", "/v1/admin/partitions/-1", None, "partition"),
        ("POST", "/v1/admin/partitions/1/join", {}, "source"),
        ("POST", "/v1/admin/partitions/1/join", {"source": 5}, "source"),
        ("POST", "/v1/admin/partitions/1/join", {"source": ""}, "source"),
        ("POST", "/v1/admin/partitions/1/join", {"source": "a", "x": 1}, "x"),
        ("POST", "/v1/admin/partitions/1/members", {}, "body"),
        ("POST", "/v1/admin/partitions/1/members", {"add": "a", "remove": "b"}, "body"),
        ("POST", "/v1/admin/partitions/1/members", {"add": "", "remove": ""}, "body"),
        ("POST", "/v1/admin/partitions/1/members", {"remove": ""}, "remove"),
        ("POST", "/v1/admin/partitions/1/leader", {"to": "a"}, "to"),
        ("GET", "/v1/admin/partitions/1/digest", None, "index"),
        ("GET", "/v1/admin/partitions/1/digest?index=abc", None, "index"),
    ],
)
async def test_bad_admin_input_is_400_naming_the_field(
    aclient: Client, admin: FakeAdmin, method: str, path: str, body: Any, field: str
) -> None:
    resp = await aclient.request(method, path, json=body)
    assert resp.status == 400
    err = await resp.json()
    assert err["code"] == "invalid_argument"
    assert err["field"] == field
    assert not err["message"].startswith(f"{field} give"), err["message"]  # issue 14: garbled
    assert admin.calls == []


@pytest.mark.parametrize(
    ("err", "status"),
    [
        (errors.NotLeader("not the leader", partition=1, leader="node-2"), 421),
        (errors.PreconditionFailed("still listed", partition=1), 412),
        (errors.Unavailable("denied for now", retry_after=1), 503),
        (errors.NotFound("no digest"), 404),
    ],
)
async def test_admin_errors_keep_their_status(
    aclient: Client, admin: FakeAdmin, err: errors.KvError, status: int
) -> None:
    admin.fail = err
    resp = await aclient.delete("/v1/admin/partitions/1")
    assert resp.status == status
    assert (await resp.json())["code"] == err.code


async def test_without_an_admin_the_routes_are_no_route(client: Client) -> None:
    resp = await client.get("/v1/admin/partitions/1")
    assert resp.status == 404
    assert (await resp.json())["code"] == "no_route"
