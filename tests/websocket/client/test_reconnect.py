"""Tests of websocket_connect and the backoff schedule."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
from collections.abc import Callable, Iterator

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from svc_infra.websocket import (
    AuthenticationError,
    ConnectionClosedError,
    ConnectionFailedError,
    ConnectionState,
    WebSocketClient,
    WebSocketConfig,
    websocket_connect,
)
from svc_infra.websocket.client import backoff_delay
from tests.support import echo, free_port, timeout, wait_until, ws_server

# Tiny delays: the schedule is exercised without waiting real seconds.
QUICK = WebSocketConfig(
    open_timeout=timeout(5),
    close_timeout=timeout(2),
    reconnect_backoff_base=0.001,
    reconnect_backoff_max=0.01,
    reconnect_jitter=0.1,
)


# --- the schedule ---------------------------------------------------------------------


def test_backoff_grows_exponentially_up_to_the_cap() -> None:
    """Without jitter, retry n waits min(base * 2**n, max)."""
    config = WebSocketConfig(
        reconnect_backoff_base=0.01, reconnect_backoff_max=0.5, reconnect_jitter=0.0
    )
    delays = [backoff_delay(n, config) for n in range(8)]
    assert delays == pytest.approx([0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.5, 0.5])
    assert backoff_delay(10_000, config) == 0.5  # no overflow for huge counts


@pytest.mark.parametrize("jitter", [0.0, 0.1, 0.5, 1.0])
def test_jitter_stays_within_its_bounds(jitter: float) -> None:
    """Each delay lies within nominal x (1 +/- jitter), and the extremes are reached."""
    config = WebSocketConfig(
        reconnect_backoff_base=0.01, reconnect_backoff_max=1.0, reconnect_jitter=jitter
    )
    for n in range(8):
        nominal = min(0.01 * 2**n, 1.0)
        low = backoff_delay(n, config, rand=lambda: 0.0)
        high = backoff_delay(n, config, rand=lambda: 1.0)
        assert low == pytest.approx(nominal * (1 - jitter))
        assert high == pytest.approx(nominal * (1 + jitter))
        rng = random.Random(n)
        for _ in range(200):
            assert low <= backoff_delay(n, config, rand=rng.random) <= high


def test_jitter_spreads_delays() -> None:
    """With jitter, clients do not all pick the same delay."""
    config = WebSocketConfig(reconnect_jitter=0.5)
    rng = random.Random(1)
    assert len({backoff_delay(3, config, rand=rng.random) for _ in range(20)}) > 10


# --- helpers --------------------------------------------------------------------------


class Attempts:
    """Counts handshakes and answers each with the next status of a script."""

    def __init__(self, statuses: Iterator[int | None]) -> None:
        self.count = 0
        self.statuses = statuses

    def __call__(self, connection: ServerConnection, request: Request) -> Response | None:
        self.count += 1
        status = next(self.statuses)
        return None if status is None else connection.respond(status, "no\n")


@pytest.fixture
def retry_log(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    caplog.set_level(logging.WARNING, logger="svc_infra.websocket.reconnect")
    return lambda: [r.getMessage() for r in caplog.records if "reconnecting in" in r.message]


# --- one connection -------------------------------------------------------------------


async def test_context_manager_and_await_forms() -> None:
    """async with websocket_connect(url) and await websocket_connect(url) both connect."""
    async with ws_server(echo) as (_, url):
        async with websocket_connect(url, config=QUICK) as ws:
            assert isinstance(ws, WebSocketClient)
            await ws.send("one")
            assert await ws.recv() == "one"
        assert not ws.is_connected
        ws = await websocket_connect(url, config=QUICK)
        await ws.send("two")
        assert await ws.recv() == "two"
        await ws.close()


async def test_context_manager_does_not_retry() -> None:
    """async with makes one attempt, even with reconnect enabled."""
    attempts = Attempts(itertools.repeat(500))
    async with ws_server(echo, process_request=attempts) as (_, url):
        with pytest.raises(ConnectionFailedError):
            async with websocket_connect(url, config=QUICK, auto_reconnect=True):
                pass
    assert attempts.count == 1


# --- reconnecting ---------------------------------------------------------------------


class SetOnLog(logging.Handler):
    """Sets an event when the reconnect logger reports a failed attempt."""

    def __init__(self, event: asyncio.Event) -> None:
        super().__init__()
        self.event = event

    def emit(self, record: logging.LogRecord) -> None:
        if "failed" in record.getMessage():
            self.event.set()


async def test_reconnects_when_the_server_comes_back_on_the_same_port() -> None:
    """The loop survives a server restart on the same port and yields a live client."""
    port = free_port()
    url = f"ws://127.0.0.1:{port}/"
    retried_while_down = asyncio.Event()
    first_round_trip = asyncio.Event()
    logger = logging.getLogger("svc_infra.websocket.reconnect")
    log_handler = SetOnLog(retried_while_down)
    logger.addHandler(log_handler)
    replies: list[str | bytes] = []
    close_codes: list[int] = []

    async def client() -> None:
        config = QUICK.replace(reconnect_max_attempts=0)
        async for ws in websocket_connect(url, config=config, auto_reconnect=True):
            assert ws.is_connected
            await ws.send(f"hello {len(replies)}")
            replies.append(await ws.recv())
            if len(replies) == 2:
                break
            first_round_trip.set()
            try:
                await ws.recv()  # until the server goes away
            except ConnectionClosedError as exc:
                close_codes.append(exc.code)

    try:
        server = await serve(echo, "127.0.0.1", port)
        task = asyncio.create_task(client())
        async with asyncio.timeout(timeout(10)):
            await first_round_trip.wait()
            server.close()  # closes the connection with 1001
            await server.wait_closed()
            await retried_while_down.wait()  # at least one attempt was refused
            server = await serve(echo, "127.0.0.1", port)
            await task
        server.close()
        await server.wait_closed()
    finally:
        logger.removeHandler(log_handler)
    assert replies == ["hello 0", "hello 1"]
    assert close_codes == [1001]


async def test_max_attempts_counts_consecutive_failures(
    retry_log: Callable[[], list[str]],
) -> None:
    """reconnect_max_attempts failures in a row end the loop with ConnectionFailedError."""
    attempts = Attempts(itertools.repeat(500))
    async with ws_server(echo, process_request=attempts) as (_, url):
        with pytest.raises(ConnectionFailedError) as info:
            async for _ in websocket_connect(
                url, config=QUICK.replace(reconnect_max_attempts=3), auto_reconnect=True
            ):
                pytest.fail("no connection should succeed")
    assert attempts.count == 3
    assert info.value.attempts == 3
    assert "after 3 attempts" in str(info.value)
    assert len(retry_log()) == 2  # a delay between each pair of attempts


async def test_success_resets_the_failure_count() -> None:
    """Failures separated by a success never add up to the limit."""
    # fail, ok, fail, ok, fail, ok: with a limit of 2 the loop must reach 3 connections.
    attempts = Attempts(iter([500, None, 500, None, 500, None]))
    connected = 0
    async with ws_server(echo, process_request=attempts) as (_, url):
        async with asyncio.timeout(timeout(10)):
            async for ws in websocket_connect(
                url, config=QUICK.replace(reconnect_max_attempts=2), auto_reconnect=True
            ):
                connected += 1
                assert ws.is_connected
                if connected == 3:
                    break
    assert connected == 3
    assert attempts.count == 6


async def test_zero_max_attempts_never_gives_up() -> None:
    """With 0, many failures in a row are retried until a connection succeeds."""
    attempts = Attempts(itertools.chain(itertools.repeat(503, 12), itertools.repeat(None)))
    async with ws_server(echo, process_request=attempts) as (_, url):
        async with asyncio.timeout(timeout(10)):
            async for ws in websocket_connect(
                url, config=QUICK.replace(reconnect_max_attempts=0), auto_reconnect=True
            ):
                assert ws.is_connected
                break
    assert attempts.count == 13


@pytest.mark.parametrize("status", [401, 403])
async def test_authentication_errors_are_not_retried(status: int) -> None:
    """A 401/403 ends the loop at once with AuthenticationError."""
    attempts = Attempts(itertools.repeat(status))
    async with ws_server(echo, process_request=attempts) as (_, url):
        with pytest.raises(AuthenticationError):
            async for _ in websocket_connect(
                url, config=QUICK.replace(reconnect_max_attempts=0), auto_reconnect=True
            ):
                pytest.fail("no connection should succeed")
    assert attempts.count == 1


async def test_reconnect_disabled_means_no_retries() -> None:
    """With reconnect_enabled=False, a failure is raised at once and a drop ends the loop."""
    config = QUICK.replace(reconnect_enabled=False, reconnect_max_attempts=0)
    attempts = Attempts(itertools.repeat(500))
    async with ws_server(echo, process_request=attempts) as (_, url):
        with pytest.raises(ConnectionFailedError) as info:
            async for _ in websocket_connect(url, config=config, auto_reconnect=True):
                pytest.fail("no connection should succeed")
    assert attempts.count == 1
    assert info.value.attempts == 1

    async with ws_server(echo) as (_, url):
        rounds = [ws async for ws in websocket_connect(url, config=config, auto_reconnect=True)]
    assert len(rounds) == 1
    assert not rounds[0].is_connected


async def test_without_auto_reconnect_iteration_runs_once() -> None:
    """auto_reconnect=False (the default) yields one connection and stops."""
    async with ws_server(echo) as (_, url):
        rounds = [ws async for ws in websocket_connect(url, config=QUICK)]
    assert len(rounds) == 1
    assert not rounds[0].is_connected


async def test_body_end_closes_and_reconnects(retry_log: Callable[[], list[str]]) -> None:
    """When the loop body ends, the client is closed, then connected again after a delay."""
    async with ws_server(echo) as (_, url):
        seen_connections = []
        async with asyncio.timeout(timeout(10)):
            async for ws in websocket_connect(url, config=QUICK, auto_reconnect=True):
                seen_connections.append(ws)
                if len(seen_connections) == 3:
                    break
        # The same client object, connected anew each time.
        assert all(c is seen_connections[0] for c in seen_connections)
    assert len(retry_log()) == 2


async def test_breaking_out_closes_the_client() -> None:
    """After break, the generator's cleanup closes the connection."""
    async with ws_server(echo) as (_, url):
        connector = websocket_connect(url, config=QUICK, auto_reconnect=True)
        iterator = aiter(connector)
        ws = await anext(iterator)
        assert ws.is_connected
        await iterator.aclose()  # what the event loop does once a broken-off loop is dropped
        assert not ws.is_connected
        assert ws.state is ConnectionState.CLOSED


async def test_state_is_reconnecting_while_waiting() -> None:
    """Between attempts the client reports RECONNECTING."""
    config = QUICK.replace(reconnect_backoff_base=timeout(2), reconnect_backoff_max=timeout(2))
    attempts = Attempts(itertools.repeat(500))
    async with ws_server(echo, process_request=attempts) as (_, url):
        connector = websocket_connect(url, config=config, auto_reconnect=True)
        task = asyncio.create_task(anext(aiter(connector)))
        try:
            await wait_until(lambda: attempts.count == 1)
            await wait_until(lambda: connector.client.state is ConnectionState.RECONNECTING)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
