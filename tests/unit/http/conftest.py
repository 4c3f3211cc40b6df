from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import prometheus_client
import pytest
from aiohttp.test_utils import TestClient
from kvnode.http.app import make_app

from tests.unit.http.fake_service import FakeService

Client = TestClient[Any, Any]


@pytest.fixture
def service() -> FakeService:
    return FakeService()


@pytest.fixture
def registry() -> prometheus_client.CollectorRegistry:
    return prometheus_client.CollectorRegistry()


@pytest.fixture
async def client(
    aiohttp_client: Callable[..., Awaitable[Client]],
    service: FakeService,
    registry: prometheus_client.CollectorRegistry,
) -> Client:
    return await aiohttp_client(make_app(service, registry=registry))
