"""The demo's chat page in headless Chromium, against the project under Daphne."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from tests.servers import Server, runserver
from tests.support import timeout
from tests.tokens import SECRET, token

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


@pytest.fixture(scope="module")
def demo() -> Iterator[Server]:
    with runserver(env={"AUTH_JWT__SECRET": SECRET}) as srv:
        yield srv


async def open_chat(browser: Any, demo: Server, user: str, room: str) -> Any:
    page = await browser.new_page()
    page.set_default_timeout(timeout(10) * 1000)
    await page.goto(f"http://{demo.host}/?token={quote(token(user))}&room={quote(room)}")
    await page.click("#join button")
    await page.wait_for_function(f"document.getElementById('status').textContent === 'in {room}'")
    return page


async def people(page: Any, expected: list[str]) -> None:
    script = (
        "(expected) => JSON.stringify([...document.querySelectorAll('#people li')]"
        ".map((li) => li.textContent).sort()) === JSON.stringify(expected)"
    )
    await page.wait_for_function(script, arg=sorted(expected))


async def test_two_pages_chat_a_third_room_hears_nothing(demo: Server, browser: Any) -> None:
    """Pages in one room exchange messages and see each other; another room sees none."""
    ann = await open_chat(browser, demo, "ann", "r1")
    ben = await open_chat(browser, demo, "ben", "r1")
    cat = await open_chat(browser, demo, "cat", "r2")
    await people(ann, ["ann", "ben"])
    await people(ben, ["ann", "ben"])
    await people(cat, ["cat"])

    await ben.fill("#text", "hello from ben")
    await ben.click("#say button")
    await ann.wait_for_function(
        "document.getElementById('log').textContent.includes('ben: hello from ben')"
    )
    await ann.fill("#text", "hi ben")
    await ann.click("#say button")
    await ben.wait_for_function(
        "document.getElementById('log').textContent.includes('ann: hi ben')"
    )

    await ben.close()
    await ann.wait_for_function(
        "document.getElementById('log').textContent.includes('ben left the room')"
    )
    await people(ann, ["ann"])
    log = await cat.text_content("#log")
    assert "hello from ben" not in log and "hi ben" not in log and "ann" not in log
