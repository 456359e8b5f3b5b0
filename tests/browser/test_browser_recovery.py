"""The browser client (svc_infra/websocket.js) in headless Chromium, across a server restart.

The demo project runs under Daphne on Redis, behind a TCP proxy. A manager in the
test process, on the same Redis, sends numbered chat messages to the page's room.
Halfway, the server is stopped and another one started; the proxy now leads to it.
The page must show every message exactly once, in order, and say "recovered"; its
token function must be called again for the new attempt.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import pytest

from svc_infra.websocket import ConnectionManager, WebSocketConfig
from tests.proxy import Proxy, proxy_to
from tests.servers import runserver
from tests.support import close_layer, flush_db, timeout
from tests.tokens import SECRET, token

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.redis]

DB = 10
MESSAGES = 120
# Counts the page's WebSocket attempts and the token each one offered.
RECORD_ATTEMPTS = """
window.attempts = [];
const Native = window.WebSocket;
window.WebSocket = function (url, protocols) {
  window.attempts.push({url: String(url), protocols: [].concat(protocols || [])});
  return new Native(url, protocols);
};
window.WebSocket.prototype = Native.prototype;
window.WebSocket.OPEN = Native.OPEN;
"""


@pytest.fixture
async def sender(redis_server: str) -> AsyncIterator[tuple[ConnectionManager, dict[str, str]]]:
    """A manager in the test process on the demo's Redis, and the demo's environment."""
    url = f"{redis_server}/{DB}"
    prefix = f"b{uuid.uuid4().hex[:8]}."
    env = {"AUTH_JWT__SECRET": SECRET, "WS_REDIS_URL": url, "WS_CHANNEL_PREFIX": prefix}
    manager = ConnectionManager(
        redis_url=url, channel_prefix=prefix, config=WebSocketConfig(history_size=1000)
    )
    await manager.start()
    try:
        yield manager, env
    finally:
        await manager.shutdown()
        await close_layer(manager.ops.layer)
        flush_db(url)


async def publish(manager: ConnectionManager, room: str, first: int, last: int) -> None:
    for i in range(first, last):
        await manager.broadcast_to_room(
            room, {"type": "message", "from": "bot", "message": f"m{i}"}
        )
        await asyncio.sleep(0.01)


async def test_the_browser_client_loses_nothing_across_a_server_restart(
    browser: Any, sender: tuple[ConnectionManager, dict[str, str]]
) -> None:
    manager, env = sender
    room = f"r{uuid.uuid4().hex[:6]}"
    with runserver(env=env) as first:
        async with proxy_to(first.port) as proxy:
            page = await open_page(browser, proxy, room)
            await publish(manager, room, 0, MESSAGES // 2)
            await wait_for_message(page, MESSAGES // 2 - 1)
            # The second attempt must carry a new token: the page reads it again.
            await page.fill("#token", token("ann", exp=3600, jti="second"))
            first.stop()
            sending = asyncio.create_task(publish(manager, room, MESSAGES // 2, MESSAGES))
            with runserver(env=env) as second:
                proxy.target = second.port
                await sending
                await wait_for_message(page, MESSAGES - 1)
                await page.wait_for_function(
                    "document.getElementById('recovery').textContent === 'recovered'"
                )
                log = await page.text_content("#log")
                attempts = await page.evaluate("window.attempts")
    seen = [int(n) for n in re.findall(r"bot: m(\d+)", log or "")]
    assert seen == list(range(MESSAGES)), "missing, repeated or out of order"
    offered = [a["protocols"] for a in attempts]
    assert len(offered) >= 2
    assert all(p[0] == "svc-infra.v1" and p[1] == "bearer" for p in offered)
    assert offered[0][2] != offered[-1][2], "the token was not asked for again"


async def open_page(browser: Any, proxy: Proxy, room: str) -> Any:
    page = await browser.new_page()
    page.set_default_timeout(timeout(20) * 1000)
    await page.add_init_script(RECORD_ATTEMPTS)
    query = f"token={quote(token('ann'))}&room={quote(room)}&backoff=100"
    await page.goto(f"http://127.0.0.1:{proxy.port}/?{query}")  # joins by itself
    await page.wait_for_function(f"document.getElementById('status').textContent === 'in {room}'")
    await asyncio.sleep(0.3)  # the consumer's join_room, right after connect
    return page


async def wait_for_message(page: Any, n: int) -> None:
    await page.wait_for_function(
        f"document.getElementById('log').textContent.includes('bot: m{n}')"
    )
