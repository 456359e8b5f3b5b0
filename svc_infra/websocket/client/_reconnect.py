"""Connecting with automatic reconnection: :func:`websocket_connect`.

Delays follow capped exponential backoff with jitter. Retry ``n`` (counting
from 0) waits::

    min(reconnect_backoff_base * 2**n, reconnect_backoff_max) * (1 ± reconnect_jitter)

The jitter spreads clients out so that a restarted server is not hit by all of
them at the same instant.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Callable, Generator, Mapping, Sequence
from types import TracebackType
from typing import Any

from ..close_codes import CloseCode
from ..config import WebSocketConfig, get_default_config
from ..exceptions import ConnectionFailedError
from ._connection import TokenSource, WebSocketClient

__all__ = ["backoff_delay", "websocket_connect"]

# The documented logger name (docs/client.md), whatever the module is called.
logger = logging.getLogger("svc_infra.websocket.reconnect")

# 2**n overflows a float past n=1023; any n past this already hits the cap.
_MAX_EXPONENT = 64


def backoff_delay(
    retry: int, config: WebSocketConfig, *, rand: Callable[[], float] = random.random
) -> float:
    """Return the delay in seconds before retry number ``retry`` (0-based).

    Args:
        retry: How many retries came before this one.
        config: Supplies ``reconnect_backoff_base``, ``_max`` and ``_jitter``.
        rand: Source of uniform numbers in ``[0, 1)``; injectable for tests.
    """
    base = config.reconnect_backoff_base
    cap = config.reconnect_backoff_max
    delay = cap if retry >= _MAX_EXPONENT else min(base * 2**retry, cap)
    spread = config.reconnect_jitter * (2.0 * rand() - 1.0)
    return max(0.0, delay * (1.0 + spread))


class websocket_connect:  # noqa: N801 - used like a function, as websockets.connect
    """Connect to ``url``, once or with automatic reconnection.

    One connection, closed on exit::

        async with websocket_connect(url) as ws:
            await ws.send("hi")

    Reconnecting: iterate to get a connected client after each (re)connection::

        async for ws in websocket_connect(url, auto_reconnect=True):
            try:
                async for message in ws:
                    process(message)
            except ConnectionClosedError:
                continue  # reconnects after a backoff delay

    The iteration yields the same :class:`WebSocketClient` each time, connected
    anew. When the body of the loop finishes, the client is closed and, after a
    delay, connected again; ``break`` to stop. Without ``auto_reconnect`` (or
    with ``reconnect_enabled=False``) the loop runs once and nothing is retried.

    A failed attempt is retried after :func:`backoff_delay`;
    ``reconnect_max_attempts`` consecutive failures (0 = never give up) end the
    loop with :exc:`ConnectionFailedError`. A successful connection resets the
    count. :exc:`AuthenticationError` is never retried.

    Args:
        url: ``ws://`` or ``wss://`` URL.
        config: Defaults to :func:`get_default_config` (the ``WS_*`` variables).
        headers: Extra HTTP headers for each opening handshake.
        subprotocols: Subprotocols to offer.
        auto_reconnect: Whether iteration reconnects.
        token: A token, or a function returning one, asked for before every
            attempt (see :class:`WebSocketClient`); after a 4401 close the loop
            reconnects at once.
        recover: Recover the messages missed between connections (see
            :class:`WebSocketClient`); the positions live on the one client the
            loop reconnects.

    Raises:
        ConnectionFailedError: When connecting fails (after the allowed retries).
        AuthenticationError: When the server answers 401 or 403.
    """

    def __init__(
        self,
        url: str,
        *,
        config: WebSocketConfig | None = None,
        headers: Mapping[str, str] | None = None,
        subprotocols: Sequence[str] | None = None,
        auto_reconnect: bool = False,
        recover: bool = False,
        token: TokenSource | None = None,
    ) -> None:
        self.config = config if config is not None else get_default_config()
        self.auto_reconnect = auto_reconnect
        self.client = WebSocketClient(
            url,
            config=self.config,
            headers=headers,
            subprotocols=subprotocols,
            recover=recover,
            token=token,
        )

    # --- one connection ----------------------------------------------------------

    def __await__(self) -> Generator[Any, None, WebSocketClient]:
        return self.client.connect().__await__()

    async def __aenter__(self) -> WebSocketClient:
        return await self.client.connect()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.client.close()

    # --- reconnecting ------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[WebSocketClient]:
        return self._connections()

    async def _connections(self) -> AsyncIterator[WebSocketClient]:
        client = self.client
        retry = self.auto_reconnect and self.config.reconnect_enabled
        max_attempts = self.config.reconnect_max_attempts
        failures = 0
        try:
            while True:
                try:
                    await client.connect()
                except ConnectionFailedError as exc:
                    failures += 1
                    if not retry:
                        raise
                    if max_attempts and failures >= max_attempts:
                        raise ConnectionFailedError(
                            client.url, exc.reason, attempts=failures
                        ) from exc
                    await self._wait(failures - 1, f"attempt {failures} failed: {exc.reason}")
                    continue
                failures = 0
                yield client
                # The loop body is done with this connection: close it and come back.
                await client.close()
                if not retry:
                    return
                if client.close_code == CloseCode.REPLACED:
                    # A newer connection of the user took this one's slot: coming
                    # back would take it from that one, and so on for ever.
                    logger.warning("%s: replaced by a newer connection; stopping", client.url)
                    return
                if client.close_code == CloseCode.TOKEN_EXPIRED and client._token is not None:
                    continue  # at once, with a fresh token: nothing to back off from
                # Wait even after a clean drop: when a server restarts, every client
                # drops at once and the jitter keeps them from returning at once.
                await self._wait(0, "connection ended")
        finally:
            client._reconnecting = False
            await client.close()

    async def _wait(self, retry: int, why: str) -> None:
        delay = backoff_delay(retry, self.config)
        logger.warning("%s: %s; reconnecting in %.3fs", self.client.url, why, delay)
        self.client._reconnecting = True
        try:
            await asyncio.sleep(delay)
        finally:
            self.client._reconnecting = False
