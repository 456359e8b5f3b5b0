"""Draining on SIGTERM, on every server the project documents: 200 sockets each.

Every socket gets the notice, then a 1001 close (4001 under Daphne, which cannot
send 1001: docs/close-codes.md), spread over the batches: WS_DRAIN_BATCH=50 every
WS_DRAIN_INTERVAL=0.25 s, so four batches over about 0.75 s.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from tests.servers import Server, daphne, runserver, uvicorn
from tests.support import timeout, wait_until
from tests.tokens import SECRET

pytestmark = [pytest.mark.e2e]

SOCKETS = 200
BATCH = 50
INTERVAL = 0.25
NOTICE = {"type": "system", "message": "Server shutting down"}
ENV = {
    "AUTH_JWT__SECRET": SECRET,
    "WS_DRAIN_BATCH": str(BATCH),
    "WS_DRAIN_INTERVAL": str(INTERVAL),
    "WS_DRAIN_NOTICE": json.dumps(NOTICE),
}
SERVERS: dict[str, Any] = {
    "daphne": lambda: daphne("project.asgi:application", ENV),
    "runserver": lambda: runserver(env=ENV),
    "uvicorn-django": lambda: uvicorn("project.asgi:application", ENV),
    "uvicorn-fastapi": lambda: uvicorn("project.fastapi_app:app", ENV),
}


@pytest.fixture(params=list(SERVERS))
def server(request: pytest.FixtureRequest) -> Iterator[tuple[str, Server]]:
    context: AbstractContextManager[Server] = SERVERS[request.param]()
    with context as srv:
        yield request.param, srv


async def watch(ws: ClientConnection) -> tuple[bool, float]:
    """(got the notice, when the close came)."""
    noticed = False
    try:
        while True:
            message = await ws.recv()
            noticed = noticed or json.loads(message) == NOTICE
    except ConnectionClosed:
        return noticed, time.monotonic()


async def test_sigterm_drains_every_socket_in_batches(server: tuple[str, Server]) -> None:
    kind, srv = server
    sockets = []
    for i in range(SOCKETS):
        sockets.append(await srv.open_ws("/ws/notifications/", f"d{i}", ping_interval=None))
    await wait_until(lambda: len(srv.get("/ws/stats")["users"]) == SOCKETS, limit=20)
    watchers = [asyncio.create_task(watch(ws)) for ws in sockets]
    started = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    results = await asyncio.wait_for(asyncio.gather(*watchers), timeout(20))
    assert await asyncio.to_thread(srv.proc.wait, timeout(20)) is not None
    expected = 4001 if kind in ("daphne", "runserver") else 1001
    codes = [ws.close_code for ws in sockets]
    assert codes == [expected] * SOCKETS, sorted(set(map(str, codes)))
    assert all(noticed for noticed, _ in results)
    times = sorted(at - started for _, at in results)
    # Four batches, INTERVAL apart: the last socket closes about 3 intervals after
    # the first. (Measured where the clients see the closes: a busy client loop can
    # see the first batch late, so only the whole spread is a reliable measure.)
    assert times[-1] - times[0] >= 2 * INTERVAL, times[:: BATCH // 2]
