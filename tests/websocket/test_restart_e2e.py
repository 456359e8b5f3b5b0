"""Recovery across restarts of the process the clients are on: never a silent gap.

Process A serves two recovering clients of one user, both in room ``r``: the
browser client (``svc_infra/websocket.js`` in headless Chromium, with a token
function) and the Python client (``websocket_connect(..., auto_reconnect=True,
recover=True)``). A publisher sends numbered messages to the room, the user and
everyone while A is stopped with SIGTERM (it drains) and started again, 20 times.
The listening socket is held by the test, so reconnects wait in its backlog and
reach A while it drains, shuts down and starts: the states the restart gap
(issue 24) came from.

What must hold, per client and stream: every message at most once and in order,
no jump between two messages unless a reconnect in between reported that stream
unrecovered, the last message arrives, and no connection after the first answers
"nothing to recover" (``recovered: null``).

- On Redis, the publisher is process B and history outlives A: nothing may be
  reported unrecovered, every message arrives.
- In memory (one process), A publishes itself and its history dies with it: each
  restart is reported unrecovered, and that report must cover every jump.
- Under Daphne, A is the Django project's managed consumers, on Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from svc_infra.websocket import WebSocketConfig, websocket_connect
from svc_infra.websocket.exceptions import ConnectionClosedError
from tests.servers import Server, listener, start_on, uvicorn
from tests.support import ROOT, flush_db, timeout, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

FASTAPI = "tests.apps.cluster_fastapi:app"
DJANGO = "tests.apps.cluster_django:application"
DB = 14  # a database of its own on the shared Redis, flushed afterwards
RESTARTS = 20
RATE = 100.0  # ticks a second; each tick is one message to the room, user and everyone
PER_LIFE = 30  # room messages each client gets from a life of A before it is stopped
LIFE_BASE = 100_000  # in memory, life k numbers its messages from k * LIFE_BASE
SCRIPT = ROOT / "svc_infra" / "websocket" / "static" / "svc_infra" / "websocket.js"
CLIENT = WebSocketConfig(
    reconnect_backoff_base=0.1,
    reconnect_backoff_max=0.5,
    reconnect_max_attempts=0,
    ping_interval=None,
    open_timeout=timeout(15),
)
# The page's side: events as [kind, ...] lists the test reads back.
FOLLOW = """
([url, to]) => {
  window.events = [];
  window.recoveries = [];
  window.tokens = 0;
  window.conn = SvcInfra.connect(url, {
    token: () => { window.tokens += 1; return "t" + window.tokens; },
    backoffBase: 100,
    backoffMax: 500,
    onMessage: (m) => window.events.push(["m", m.to, m.seq]),
    onRecover: (r) => {
      window.recoveries.push(r.recovered);
      window.events.push(["u", r.streams.map((s) => to[s.split(":")[0]])]);
    },
  });
}
"""


@dataclass
class Log:
    """What one client got: messages and unrecovered reports, in arrival order."""

    events: list[list[Any]] = field(default_factory=list)
    recovered: list[bool | None] = field(default_factory=list)

    def rooms(self) -> int:
        return sum(1 for e in self.events if e[0] == "m" and e[1] == "room")

    def last(self) -> dict[str, int]:
        return {e[1]: e[2] for e in self.events if e[0] == "m"}


def check(log: Log, name: str, final: int, *, lossless: bool) -> None:
    """The guarantee, for one client's log (see the module docstring)."""
    last: dict[str, int] = {}
    covered: set[str] = set()
    errors: list[str] = []
    for event in log.events:
        if event[0] == "u":
            covered.update(event[1])
            continue
        _, to, seq = event
        before = last.get(to)
        if before is not None and seq <= before:
            errors.append(f"{to}: {seq} after {before} (repeated or out of order)")
        elif before is not None and seq != before + 1 and to not in covered:
            errors.append(f"{to}: silent gap {before} -> {seq}")
        covered.discard(to)
        last[to] = seq
    assert not errors, f"{name}: {errors[:5]}"
    assert last == {"room": final, "user": final, "all": final}, f"{name}: {last}"
    assert log.recovered[0] is None, f"{name}: {log.recovered}"
    assert None not in log.recovered[1:], f"{name}: a reconnect answered null: {log.recovered}"
    assert len(log.recovered) > RESTARTS, f"{name}: {len(log.recovered)} connections"
    if lossless:
        assert all(r is True for r in log.recovered[1:]), f"{name}: {log.recovered}"
        assert not any(e[0] == "u" and e[1] for e in log.events), name


async def follow_python(url: str, log: Log) -> None:
    """The Python client: reads until cancelled, logging what it gets."""
    names = {"user": "user", "room": "room", "broadcast": "all"}
    async for ws in websocket_connect(url, config=CLIENT, auto_reconnect=True, recover=True):
        log.recovered.append(ws.recovered)
        reported = 0
        with contextlib.suppress(ConnectionClosedError):
            async for raw in ws:
                # Streams reported unrecovered since the last message (at the
                # reconnect, or by a stream control frame before this message).
                streams = ws.unrecovered_streams
                if len(streams) > reported:
                    log.events.append(["u", [names[s.split(":")[0]] for s in streams[reported:]]])
                    reported = len(streams)
                message = json.loads(raw)
                log.events.append(["m", message["to"], message["seq"]])


@contextlib.asynccontextmanager
async def page_following(browser: Any, server: Server, url: str) -> AsyncIterator[Any]:
    page = await browser.new_page()
    page.set_default_timeout(timeout(20) * 1000)
    # A page of the server's own origin: Chromium blocks about:blank from loopback.
    await page.goto(f"http://{server.host}/")
    await page.add_script_tag(path=str(SCRIPT))
    await page.evaluate(FOLLOW, [url, {"user": "user", "room": "room", "broadcast": "all"}])
    try:
        yield page
    finally:
        await page.evaluate("window.conn.close()")
        await page.close()


async def page_log(page: Any) -> Log:
    events, recovered = await page.evaluate("[window.events, window.recoveries]")
    return Log(events, recovered)


@dataclass
class Scenario:
    """Process A (restarted) and who publishes: B on Redis, or A itself in memory."""

    kind: str  # uvicorn or daphne, for A
    app: str
    env: dict[str, str]
    publisher: Server | None  # None: A publishes (one process, in memory)


async def run(browser: Any, scenario: Scenario) -> None:
    user = f"u{uuid.uuid4().hex[:6]}"
    room = f"r{uuid.uuid4().hex[:6]}"
    sock = listener()
    a = await asyncio.to_thread(start_on, sock, scenario.kind, scenario.app, scenario.env)
    url = a.ws(f"/ws/{user}?room={room}")
    python = Log()
    follower = asyncio.create_task(follow_python(url, python))
    pumps: list[tuple[Server, str]] = []

    async def pump(server: Server, base: int) -> None:
        name = uuid.uuid4().hex
        status, _ = await asyncio.to_thread(
            server.ctl, "pump", name=name, user=user, room=room, n=10**7, rate=RATE, base=base
        )
        assert status == 200
        pumps.append((server, name))

    try:
        async with page_following(browser, a, url) as page:
            browser_rooms = 0

            async def progress() -> None:
                # Both clients get PER_LIFE more room messages from this life of A.
                nonlocal browser_rooms
                python_rooms = python.rooms() + PER_LIFE
                await wait_until(lambda: python.rooms() >= python_rooms, limit=20)
                browser_rooms += PER_LIFE
                await page.wait_for_function(
                    f"window.events.filter((e) => e[1] === 'room').length >= {browser_rooms}"
                )
                browser_rooms = (await page_log(page)).rooms()

            await wait_until(lambda: bool(python.recovered), limit=15)
            await page.wait_for_function("window.recoveries.length > 0")
            await asyncio.sleep(0.3)  # both joined the room right after connecting
            await pump(scenario.publisher or a, 0)
            for life in range(1, RESTARTS + 1):
                await progress()
                await asyncio.to_thread(a.stop, signal.SIGTERM)
                a = await asyncio.to_thread(
                    start_on, sock, scenario.kind, scenario.app, scenario.env
                )
                if scenario.publisher is None:
                    pumps.clear()  # that pump died with its process
                    await pump(a, life * LIFE_BASE)
            await progress()  # the last life too (in memory: its pump has sent)
            server, name = pumps[-1]
            status, answer = await asyncio.to_thread(server.ctl, "pump_stop", name=name)
            assert status == 200
            base = 0 if scenario.publisher is not None else RESTARTS * LIFE_BASE
            final = base + answer["sent"] - 1
            done = {"room": final, "user": final, "all": final}
            await wait_until(lambda: python.last() == done, limit=20)
            await page.wait_for_function(
                "(() => { const l = {}; window.events.forEach((e) => { if (e[0] === 'm') "
                f"l[e[1]] = e[2]; }}); return l.room === {final} && l.user === {final} "
                f"&& l.all === {final}; }})()"
            )
            in_browser = await page_log(page)
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
        a.stop()
        sock.close()
    lossless = scenario.publisher is not None
    check(python, "python client", final, lossless=lossless)
    check(in_browser, "browser client", final, lossless=lossless)


def history_env(redis_url: str | None) -> dict[str, str]:
    values = {"WS_HISTORY_SIZE": "5000", "WS_CHANNEL_PREFIX": f"s{uuid.uuid4().hex[:8]}."}
    if redis_url is not None:
        values["WS_REDIS_URL"] = redis_url
    return values


@contextlib.contextmanager
def on_redis(redis_server: str) -> Iterator[tuple[dict[str, str], Server]]:
    """The environment of a Redis cluster, and its publisher B (FastAPI, uvicorn)."""
    url = f"{redis_server}/{DB}"
    values = history_env(url)
    try:
        with uvicorn(FASTAPI, {**values, "CLUSTER_NAME": "b"}) as b:
            yield values, b
    finally:
        flush_db(url)


@pytest.mark.redis
@pytest.mark.timeout(300)
async def test_restarts_of_a_fastapi_process_lose_nothing_on_redis(
    browser: Any, redis_server: str
) -> None:
    with on_redis(redis_server) as (values, b):
        await run(browser, Scenario("uvicorn", FASTAPI, {**values, "CLUSTER_NAME": "a"}, b))


@pytest.mark.timeout(300)
async def test_restarts_of_a_single_process_in_memory_never_hide_a_gap(browser: Any) -> None:
    values = {**history_env(None), "CLUSTER_NAME": "a"}
    await run(browser, Scenario("uvicorn", FASTAPI, values, None))


@pytest.mark.redis
@pytest.mark.timeout(300)
async def test_restarts_of_the_django_project_under_daphne_lose_nothing(
    browser: Any, redis_server: str
) -> None:
    with on_redis(redis_server) as (values, b):
        await run(browser, Scenario("daphne", DJANGO, {**values, "CLUSTER_NAME": "a"}, b))
