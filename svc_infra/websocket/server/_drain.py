"""Draining: closing every socket on shutdown in batches, the signals that start it,
and the :class:`Gate` that refuses new connections meanwhile.

A restarted process must not send all its clients to the other processes in the
same second. As Phoenix's drainer does, :func:`drain` closes ``batch`` sockets,
waits ``interval`` seconds, closes the next batch, and closes whatever is left when
``timeout`` is reached. :func:`drain_on_signals` makes SIGINT/SIGTERM drain first
and then reach the server's own handler; a second signal reaches it at once.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable, Coroutine
from types import FrameType
from typing import Any, NoReturn

from ..close_codes import CloseCode
from ..config import WebSocketConfig
from ..exceptions import ServerDrainingError
from ._connections import Connections
from ._recovery import BROADCAST_STREAM, chosen_subprotocol, v1_frame
from ._registry import Registry
from .transport import Transport

__all__ = ["SHUTDOWN_REASON", "Gate", "drain", "drain_on_signals"]

SHUTDOWN_REASON = "server shutting down"

logger = logging.getLogger("svc_infra.websocket.manager")

_Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


class Gate:
    """Whether the manager takes new connections: not while it drains, not while it
    shuts down, and, once a signal stopped the process, not at all (the server may
    still accept a connection or two before it stops listening, and they must be
    refused, not restart the manager)."""

    __slots__ = ("draining", "exiting", "stopping")

    def __init__(self) -> None:
        self.draining = False
        self.stopping = False
        self.exiting = False

    def closed(self) -> bool:
        """Whether new connections are refused."""
        return self.draining or self.stopping or self.exiting

    async def refuse(self, transport: Transport, user: str) -> NoReturn:
        """Close a connection the manager will not take with 1001, before any frame.

        The handshake is accepted first, with the subprotocol it would have had:
        refused before accept, the client would see HTTP 403, which reads as a bad
        credential; accepted without ``svc-infra.v1``, a recovering client would
        read "nothing to recover".

        Raises:
            ServerDrainingError: Always, once the socket is closed.
        """
        if not transport.accepted:
            await transport.accept(chosen_subprotocol(transport.subprotocols))
        await transport.close(CloseCode.GOING_AWAY, SHUTDOWN_REASON)
        raise ServerDrainingError(user)


async def drain(
    connections: Connections,
    registry: Registry,
    config: WebSocketConfig,
    *,
    code: int,
    reason: str,
) -> int:
    """Close every connection with ``code``: ``drain_batch`` of them every
    ``drain_interval`` seconds, all of them within ``drain_timeout`` seconds, after
    sending ``drain_notice`` (if set). Returns how many were closed.

    Each close is a normal one: queued frames are flushed, presence and rooms are
    cleaned, ``on_disconnect`` runs. Cancelling is not safe: sockets may stay open.
    """
    batch, interval, within = config.drain_batch, config.drain_interval, config.drain_timeout
    notice = config.drain_notice
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    conns = list(registry.conns.values())
    if notice is not None:
        v1 = v1_frame(BROADCAST_STREAM, None, None, notice)
        for conn in conns:
            conn.push(notice if conn.session is None else v1)
    closed = 0
    for start in range(0, len(conns), max(batch, 1)):
        if start:
            wait = min(interval, deadline - loop.time())
            if wait > 0:
                await asyncio.sleep(wait)
        chunk = conns[start : start + batch] if loop.time() < deadline else conns[start:]
        await connections.close_many(chunk, code, reason)
        closed += len(chunk)
        if len(chunk) > batch:  # the deadline passed: the rest went at once
            break
    return closed


def drain_on_signals(
    drain_then_stop: Callable[[], Coroutine[Any, Any, None]],
) -> Callable[[], None] | None:
    """Make SIGINT/SIGTERM run ``drain_then_stop()`` before the handler that was
    installed (the server's), which then runs as if the signal had just arrived.

    A second signal reaches the server's handler at once. Returns a function that
    puts the previous handlers back, or None outside the main thread (where
    signal handlers cannot be set).
    """
    if threading.current_thread() is not threading.main_thread():
        return None
    loop = asyncio.get_running_loop()
    previous: dict[int, _Handler] = {}
    draining = False
    tasks: set[asyncio.Task[None]] = set()

    def chain(signum: int) -> None:
        # Put the server's handler back and let the signal reach it, whatever kind
        # of handler it is (a Python function, asyncio's wakeup handler, SIG_DFL).
        handler = previous.get(signum)
        signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        signal.raise_signal(signum)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal draining
        if draining:  # a second signal: do not wait any longer
            chain(signum)
            return
        draining = True

        def start() -> None:
            task = loop.create_task(drain_then_stop())
            tasks.add(task)

            def done(task: asyncio.Task[None]) -> None:
                tasks.discard(task)
                if not task.cancelled() and task.exception() is not None:
                    logger.error("draining failed", exc_info=task.exception())
                chain(signum)

            task.add_done_callback(done)

        # A signal handler may not touch the loop directly; this is thread-safe.
        loop.call_soon_threadsafe(start)

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.getsignal(sig)
        signal.signal(sig, on_signal)

    def restore() -> None:
        for sig, handler in previous.items():
            if signal.getsignal(sig) is on_signal:
                signal.signal(sig, handler if handler is not None else signal.SIG_DFL)

    return restore
