"""A real browser sends its token as a WebSocket subprotocol."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.servers import Server, uvicorn
from tests.support import timeout
from tests.tokens import SECRET, token

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with uvicorn("tests.apps.auth_app:app", env={"AUTH_JWT__SECRET": SECRET}) as srv:
        yield srv


async def test_chromium_connects_with_the_bearer_subprotocol(server: Server, browser: Any) -> None:
    """Chromium opens the socket with ["bearer", token]; the server echoes 'bearer'."""
    page = await browser.new_page()
    page.set_default_timeout(timeout(10) * 1000)
    await page.goto(f"http://{server.host}/page")
    result = await page.evaluate(
        "([path, token]) => window.openWs(path, token)", ["/user/ws", token("carol", scope="a")]
    )
    assert result == {
        "protocol": "bearer",
        "data": {"id": "carol", "email": None, "scopes": ["a"], "via": "subprotocol"},
    }
    # A bad token: the handshake is refused (HTTP 403), which a browser reports as 1006.
    refused = await page.evaluate(
        "([path, token]) => window.openWs(path, token)", ["/user/ws", "not-a-jwt"]
    )
    assert refused == {"closed": 1006}
