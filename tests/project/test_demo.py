"""The demo project, served by a real server process, as ``make run`` starts it."""

from __future__ import annotations

import os
import subprocess
import urllib.request
from collections.abc import Iterator

import pytest

from svc_infra.websocket import AuthenticationError, WebSocketClient, WebSocketConfig
from tests.support import ROOT, free_port, python_cmd, timeout, wait_for_port

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def demo_url() -> Iterator[str]:
    """``manage.py runserver`` (daphne's ASGI runserver) on a free port."""
    port = free_port()
    proc = subprocess.Popen(
        python_cmd("manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"),
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, proc)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=timeout(10))


CONFIG = WebSocketConfig(open_timeout=timeout(10), close_timeout=timeout(2))


async def test_echo_text_json_and_binary(demo_url: str) -> None:
    """ws/echo/ sends text, JSON and binary messages back unchanged."""
    # A browser sends its page's Origin; the project's origin validator wants one.
    origin = {"Origin": f"http://{demo_url}"}
    async with WebSocketClient(f"ws://{demo_url}/ws/echo/", config=CONFIG, headers=origin) as ws:
        await ws.send("hello")
        assert await ws.recv() == "hello"
        await ws.send_json({"type": "ping", "n": 1})
        assert await ws.recv_json() == {"type": "ping", "n": 1}
        await ws.send(b"\x01\x02")
        assert await ws.recv() == b"\x01\x02"


async def test_foreign_origin_is_refused(demo_url: str) -> None:
    """The origin validator refuses a page from another site with 403."""
    with pytest.raises(AuthenticationError) as info:
        async with WebSocketClient(
            f"ws://{demo_url}/ws/echo/", config=CONFIG, headers={"Origin": "http://evil.example"}
        ):
            pass
    assert info.value.status == 403


def test_index_page(demo_url: str) -> None:
    """GET / serves the demo page, which opens ws/echo/."""
    with urllib.request.urlopen(f"http://{demo_url}/", timeout=timeout(10)) as response:
        assert response.status == 200
        body = response.read().decode()
    assert "ws/echo/" in body
