"""The demo's live admin dashboard in headless Chromium, on Django and the FastAPI twin.

The page counts the cluster's connections in ``[data-metric="connections"]``; when
three more clients connect, the number goes up by three. The run on Django saves a
screenshot (``docs/img/dashboard.png``, shown in the README) when asked with
``SVC_INFRA_SCREENSHOT=1``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.servers import Server
from tests.servers import demo as demo_server
from tests.support import timeout
from tests.tokens import SECRET, token

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

ENV = {"AUTH_JWT__SECRET": SECRET, "WS_DASHBOARD_INTERVAL": "0.2"}
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "img" / "dashboard.png"


@pytest.fixture(scope="module", params=["django", "fastapi"])
def demo(request: pytest.FixtureRequest) -> Iterator[tuple[str, Server]]:
    with demo_server("daphne" if request.param == "django" else "fastapi-twin", ENV) as srv:
        yield request.param, srv


async def metric(page: Any, name: str) -> str:
    return str(await page.text_content(f'[data-metric="{name}"]')).strip()


async def test_the_dashboard_counts_new_connections(browser: Any, demo: tuple[str, Server]) -> None:
    kind, server = demo
    page = await browser.new_page(viewport={"width": 1100, "height": 760})
    page.set_default_timeout(timeout(15) * 1000)
    admin = quote(token("admin", scope="ws:admin", exp=600))
    await page.goto(f"http://{server.host}/dashboard/?token={admin}")
    await page.wait_for_function(
        "/^[0-9]+$/.test(document.querySelector('[data-metric=\"connections\"]').textContent)"
    )
    before = int(await metric(page, "connections"))
    clients = [await server.open_ws("/ws/notifications/", f"viewer{i}") for i in range(3)]
    try:
        await page.wait_for_function(
            "(n) => document.querySelector('[data-metric=\"connections\"]').textContent == n",
            arg=str(before + 3),
        )
        await page.wait_for_function(
            "/^[0-9.]+$/.test(document.querySelector('[data-metric=\"frames_rate\"]').textContent)"
        )
        assert int(await metric(page, "users")) >= 4
        assert await page.text_content("#status") == "open"
        if kind == "django" and os.environ.get("SVC_INFRA_SCREENSHOT") == "1":
            # For the picture only: let the charts gather a few points of traffic.
            for n in range(40):
                await clients[n % 3].send("ping")
                await page.wait_for_timeout(50)
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(SCREENSHOT))
    finally:
        for ws in clients:
            await ws.close()
    await page.wait_for_function(
        "(n) => document.querySelector('[data-metric=\"connections\"]').textContent == n",
        arg=str(before),
    )
