"""The backup and restore admin routes: the backup is streamed with its position, a restore's
body reaches the admin as a stream with the parsed voters, and bad input is a 400 naming the
field (before the admin is called)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import prometheus_client
import pytest
from kvnode.core import errors
from kvnode.http.app import make_app

from tests.unit.http.fake_service import FakeService
from tests.unit.http.test_partition_admin import FakeAdmin


class BackupAdmin(FakeAdmin):
    async def backup_stream(
        self, partition: int, *, timeout: float
    ) -> tuple[dict[str, Any], AsyncIterator[bytes]]:
        self._record("backup", partition, timeout)

        async def body() -> AsyncIterator[bytes]:
            for chunk in (b"RKV", b"SNAP"):
                yield chunk

        return {"raft_index": 9, "store_applied": 8}, body()

    async def restore(
        self, partition: int, *, peers: list[str], body: AsyncIterator[bytes]
    ) -> dict[str, Any]:
        received = b"".join([chunk async for chunk in body])
        self._record("restore", partition, peers, received)
        return {"partition": partition, "already_hosted": False, "keys": 0,
                "applied_index": 8, "digest": "d", "bytes": len(received)}  # fmt: skip


@pytest.fixture
def admin() -> BackupAdmin:
    return BackupAdmin()


@pytest.fixture
async def aclient(aiohttp_client, admin: BackupAdmin):
    app = make_app(FakeService(), registry=prometheus_client.CollectorRegistry(), admin=admin)
    return await aiohttp_client(app)


async def test_backup_is_streamed_with_its_applied_index(aclient, admin) -> None:
    resp = await aclient.get("/v1/admin/partitions/2/backup", headers={"X-Ringkv-Timeout": "3"})
    assert resp.status == 200
    assert resp.headers["X-Ringkv-Store-Applied"] == "8"
    assert await resp.read() == b"RKVSNAP"
    assert admin.calls == [("backup", 2, 3.0)]


async def test_restore_streams_the_body_with_the_voters(aclient, admin) -> None:
    peers = "n0.peers:17002,n1.peers:17002,n2.peers:17002"
    payload = b"x" * (3 << 20)  # several chunks
    resp = await aclient.post(f"/v1/admin/partitions/2/restore?peers={peers}", data=payload)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["bytes"] == len(payload)
    ((kind, p, got_peers, body),) = admin.calls
    assert (kind, p, got_peers) == ("restore", 2, peers.split(","))
    assert body == payload


async def test_a_refused_restore_keeps_its_status(aclient, admin) -> None:
    admin.fail = errors.PreconditionFailed("node n0 already has a partition map")
    resp = await aclient.post("/v1/admin/partitions/0/restore?peers=a:1", data=b"x")
    assert resp.status == 412
    assert "already has a partition map" in (await resp.json())["message"]


@pytest.mark.parametrize(
    ("query", "field"),
    [("", "peers"), ("?peers=a", "peers"), ("?peers=a:1,a:1", "peers"), ("?x=1", "x")],
)
async def test_bad_restore_input_is_400_before_the_admin(aclient, admin, query, field) -> None:
    resp = await aclient.post(f"/v1/admin/partitions/0/restore{query}", data=b"x")
    assert resp.status == 400
    assert (await resp.json())["field"] == field
    assert admin.calls == []
