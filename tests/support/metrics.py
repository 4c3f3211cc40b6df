"""Reading a node's Prometheus ``/metrics`` in tests."""

from __future__ import annotations

import aiohttp


async def metric(session: aiohttp.ClientSession, url: str, name: str, **labels: str) -> float:
    """The sum of every sample of ``name`` on the node at ``url`` whose labels include
    ``labels`` (0 when there is none)."""
    async with session.get(url + "/metrics") as r:
        text = await r.text()
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    total = 0.0
    for line in text.splitlines():
        if not (line.startswith(name + " ") or line.startswith(name + "{")):
            continue
        if all(w in line.split(" ", 1)[0] for w in wanted):
            total += float(line.rsplit(" ", 1)[1])
    return total
