"""The demo's chat page in headless Chromium, against the project under Daphne."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from tests.servers import Server, runserver
from tests.support import ROOT, timeout
from tests.tokens import SECRET, token

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


@pytest.fixture(scope="module")
def demo() -> Iterator[Server]:
    with runserver(env={"AUTH_JWT__SECRET": SECRET}) as srv:
        yield srv


STATUS = "document.getElementById('status').textContent"


async def open_chat(browser: Any, demo: Server, user: str, room: str) -> Any:
    """The chat page from a link with a token: it joins the link's room by itself."""
    page = await browser.new_page()
    page.set_default_timeout(timeout(10) * 1000)
    await page.goto(f"http://{demo.host}/?token={quote(token(user))}&room={quote(room)}")
    await page.wait_for_function(f"{STATUS} === 'in {room}'")
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


async def test_a_link_with_a_token_joins_its_room_without_a_click(
    demo: Server, browser: Any
) -> None:
    """Opened from make run's link, the page is in the room at once: no Join click."""
    page = await open_chat(browser, demo, "dan", "general")
    await people(page, ["dan"])
    assert await page.input_value("#room") == "general"
    await page.fill("#room", "other")  # Join still moves to another room
    await page.click("#join button")
    await page.wait_for_function(f"{STATUS} === 'in other'")
    await page.close()


async def test_a_wrong_token_is_reported_as_refused_within_seconds(
    demo: Server, browser: Any
) -> None:
    """The server refuses the handshake (HTTP 403, which the browser sees as 1006):
    the page says "refused" after a few attempts, with the default backoff (1 s base),
    instead of "reconnecting…" for ever."""
    page = await browser.new_page()
    page.set_default_timeout(timeout(10) * 1000)
    started = time.monotonic()
    await page.goto(f"http://{demo.host}/?token=not-a-jwt&room=r3")
    await page.wait_for_function(f"{STATUS}.startsWith('refused')")
    assert time.monotonic() - started < timeout(8)
    assert "did not accept this token" in str(await page.text_content("#status"))
    await page.close()


async def test_an_expired_token_refused_then_replaced_recovers_by_itself(
    demo: Server, browser: Any
) -> None:
    """Refused, the client keeps trying and asks for the token before each attempt:
    a fresh token pasted in the field is picked up without a click."""
    page = await browser.new_page()
    page.set_default_timeout(timeout(10) * 1000)
    expired = quote(token("eve", exp=-60))
    await page.goto(f"http://{demo.host}/?token={expired}&room=r4&backoff=100")
    await page.wait_for_function(f"{STATUS}.startsWith('refused')")
    await page.fill("#token", token("eve"))
    await page.wait_for_function(f"{STATUS} === 'in r4'")
    await people(page, ["eve"])
    await page.close()


ES_MODULE = ROOT / "clients" / "js" / "src" / "index.js"


async def test_the_es_module_connects_from_chromium_too(demo: Server, browser: Any) -> None:
    """The npm package's module (the source the script tag is generated from), loaded
    with import() as a bundler's output would run it: it joins a room and chats."""
    page = await browser.new_page()
    page.set_default_timeout(timeout(10) * 1000)
    await page.route(
        "**/esm/svc-infra-websocket.js",
        lambda route: route.fulfill(path=str(ES_MODULE), content_type="text/javascript"),
    )
    await page.goto(f"http://{demo.host}/")  # no token: the page does not join
    result = await page.evaluate(
        """async (token) => {
          const { connect, SUBPROTOCOL } = await import("/esm/svc-infra-websocket.js");
          const seen = [];
          return await new Promise((resolve) => {
            const conn = connect("/ws/chat/esm/", {
              token: () => token,
              onRecover: (r) => seen.push(["recover", r.recovered]),
              onMessage: (m, meta) => {
                seen.push(["message", m.message, meta.stream]);
                conn.close();
                resolve({ seen, protocol: SUBPROTOCOL });
              },
            });
          });
        }""",
        token("fay"),
    )
    assert result == {
        "seen": [["recover", None], ["message", "fay joined the room", "room:esm"]],
        "protocol": "svc-infra.v1",
    }
    assert await page.text_content("#status") == "not connected"
    await page.close()
