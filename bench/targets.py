"""The systems ``bench compare`` drives, behind one small interface: ``read(key)`` and
``write(key, value)``, raising ``OpError`` (with a short kind for the error column) on failure.

- ``RingkvNode``: plain HTTP to one node, as a client behind a Kubernetes Service would talk
  (the node forwards to partition leaders itself); strong reads by default, eventual with
  ``?consistency=eventual``.
- ``RingkvSmart``: ``kvnode.client.Client`` in direct mode (partition map, straight to leaders).
- ``EtcdGateway``: etcd's v3 HTTP/JSON gateway (``/v3/kv/put``, ``/v3/kv/range``, base64 keys
  and values), sent to the leader; eventual reads are ``serializable`` ranges.

Each HTTP target owns an aiohttp session whose connector holds at most ``connections``
connections: the connection count of the cell is the pool size, and ``connections`` workers
keep one request each in flight.
"""

from __future__ import annotations

import base64
import urllib.parse
from typing import Protocol

import aiohttp
import orjson
from kvnode.client import Client
from kvnode.core import errors

REQUEST_TIMEOUT_S = 10.0


class OpError(Exception):
    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class Target(Protocol):
    name: str

    async def read(self, key: str) -> None: ...

    async def write(self, key: str, value: str) -> None: ...

    async def close(self) -> None: ...


def _session(connections: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=connections, limit_per_host=connections)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
        json_serialize=lambda obj: orjson.dumps(obj).decode(),
    )


async def _request(
    session: aiohttp.ClientSession, method: str, url: str, *, data: bytes | None = None
) -> bytes:
    try:
        async with session.request(
            method, url, data=data, headers={"Content-Type": "application/json"}
        ) as resp:
            body = await resp.read()
            if resp.status >= 300:
                raise OpError(f"http {resp.status}")
            return body
    except TimeoutError as exc:
        raise OpError("timeout") from exc
    except aiohttp.ClientError as exc:
        raise OpError(type(exc).__name__) from exc


class RingkvNode:
    def __init__(self, url: str, *, connections: int, consistency: str) -> None:
        self.name = "ringkv-node"
        self._base = url.rstrip("/") + "/v1/kv/"
        self._query = "?consistency=eventual" if consistency == "eventual" else ""
        self._session = _session(connections)

    def _url(self, key: str) -> str:
        return self._base + urllib.parse.quote(key, safe="")

    async def read(self, key: str) -> None:
        await _request(self._session, "GET", self._url(key) + self._query)

    async def write(self, key: str, value: str) -> None:
        await _request(self._session, "PUT", self._url(key), data=orjson.dumps({"value": value}))

    async def close(self) -> None:
        await self._session.close()


class RingkvSmart:
    def __init__(self, endpoints: list[str], *, consistency: str) -> None:
        self.name = "ringkv-client"
        self._client = Client(endpoints, timeout=REQUEST_TIMEOUT_S)
        self._consistency = consistency

    async def read(self, key: str) -> None:
        try:
            entry = await self._client.get(key, consistency=self._consistency)
        except errors.KvError as exc:
            raise OpError(exc.code) from exc
        if entry is None:
            raise OpError("missing key")

    async def write(self, key: str, value: str) -> None:
        try:
            await self._client.put(key, value)
        except errors.KvError as exc:
            raise OpError(exc.code) from exc

    async def close(self) -> None:
        await self._client.close()


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class EtcdGateway:
    def __init__(self, leader_url: str, *, connections: int, consistency: str) -> None:
        self.name = "etcd"
        base = leader_url.rstrip("/")
        self._put = base + "/v3/kv/put"
        self._range = base + "/v3/kv/range"
        self._serializable = consistency == "eventual"
        self._session = _session(connections)

    async def read(self, key: str) -> None:
        body: dict[str, object] = {"key": b64(key)}
        if self._serializable:
            body["serializable"] = True
        raw = await _request(self._session, "POST", self._range, data=orjson.dumps(body))
        if b'"kvs"' not in raw:
            raise OpError("missing key")

    async def write(self, key: str, value: str) -> None:
        body = orjson.dumps({"key": b64(key), "value": b64(value)})
        await _request(self._session, "POST", self._put, data=body)

    async def close(self) -> None:
        await self._session.close()
