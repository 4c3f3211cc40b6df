"""A trivial aiohttp server (GET and PUT answer a tiny JSON at once) to measure the ceiling of
``bench compare``'s load generator: ``python bench/echo.py HOST PORT``.

It runs in its own process, like the systems under test, so the generator's own throughput
against it is a lower bound of what the generator can drive (the echo server is Python too).
"""

from __future__ import annotations

import sys

from aiohttp import web

ANSWER = b'{"key":"k","version":1}'


async def _answer(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=ANSWER, content_type="application/json")


def main() -> None:
    import asyncio

    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    host, port = sys.argv[1], int(sys.argv[2])
    app = web.Application(client_max_size=4 << 20)
    app.router.add_route("*", "/{tail:.*}", _answer)
    web.run_app(app, host=host, port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()
