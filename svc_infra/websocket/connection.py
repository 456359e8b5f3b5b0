"""Server-side connections: the transport interface and the per-connection outbox.

The manager core knows a socket only through :class:`Transport`; adapters wrap a
Starlette/FastAPI ``WebSocket`` or a Channels consumer in one
(:mod:`svc_infra.websocket.integrations`).

Each :class:`LocalConnection` owns a bounded outbox. Fan-out appends to it without
waiting; a task writes it to the socket in order, and exists only while there is
something to write, so an idle connection costs no task. When the outbox would
exceed its limit the connection is evicted (closed with
:data:`CLOSE_SLOW_CONSUMER`), so one slow client never holds up the others and never
grows memory without bound.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, runtime_checkable

from .messages import Frame
from .models import ConnectionInfo

__all__ = ["CLOSE_SLOW_CONSUMER", "LocalConnection", "Transport"]

logger = logging.getLogger("svc_infra.websocket.manager")

# 1013 "Try Again Later": the server cannot keep up with this client; it may
# reconnect (and should read faster).
CLOSE_SLOW_CONSUMER = 1013


@runtime_checkable
class Transport(Protocol):
    """The part of a server-side WebSocket the manager uses."""

    @property
    def accepted(self) -> bool:
        """Whether the handshake was accepted."""
        ...

    @property
    def subprotocols(self) -> list[str]:
        """Subprotocols the client offered."""
        ...

    async def accept(self, subprotocol: str | None = None) -> None:
        """Accept the handshake."""
        ...

    async def send(self, frame: Frame) -> None:
        """Send a text (``str``) or binary (``bytes``) frame.

        Raises:
            Exception: Any error if the socket is gone; the manager drops it.
        """
        ...

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the socket; must not raise if it is already closed."""
        ...


class LocalConnection:
    """One socket held by this process, with its outbox."""

    __slots__ = (
        "_drain_task",
        "_failed",
        "_limit",
        "_queue",
        "_queued",
        "closed",
        "info",
        "socket",
        "transport",
    )

    def __init__(
        self,
        info: ConnectionInfo,
        socket: Any,
        transport: Transport,
        *,
        limit: int,
        failed: Callable[[LocalConnection, BaseException | None], None],
    ) -> None:
        self.info = info
        self.socket = socket
        self.transport = transport
        self.closed = False
        self._limit = limit
        self._failed = failed
        # Created on demand and dropped when empty: idle connections stay small.
        self._queue: deque[Frame] | None = None
        self._queued = 0
        self._drain_task: asyncio.Task[None] | None = None

    @property
    def id(self) -> str:
        return self.info.connection_id

    @property
    def user_id(self) -> str:
        return self.info.user_id

    @property
    def queued_bytes(self) -> int:
        """Size of what waits in the outbox (characters for text frames)."""
        return self._queued

    def push(self, frame: Frame) -> bool:
        """Queue ``frame`` for sending; never waits.

        Returns:
            False if the frame was not queued: the connection is closed, or the
            outbox would exceed its limit, in which case the connection is
            reported as failed (evicted). A single frame larger than the limit is
            accepted when the outbox is empty.
        """
        if self.closed:
            return False
        size = len(frame)
        if self._queue is None:
            self._queue = deque()
        elif self._queued + size > self._limit:
            self._failed(self, None)
            return False
        self._queue.append(frame)
        self._queued += size
        if self._drain_task is None:
            self._drain_task = _start_eagerly(self._drain())
        return True

    def dropped_frames(self) -> int:
        """How many frames are still queued (lost if the connection goes away)."""
        return len(self._queue) if self._queue else 0

    async def _drain(self) -> None:
        queue = self._queue
        try:
            while queue:
                frame = queue[0]
                await self.transport.send(frame)
                queue.popleft()
                self._queued -= len(frame)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._drain_task = None
            self._failed(self, exc)
            return
        self._drain_task = None
        if self._queue is queue and not queue:
            self._queue = None

    async def flush(self, within: float) -> None:
        """Wait, at most ``within`` seconds, until the outbox is written.

        Cancelling is safe.
        """
        task = self._drain_task
        if task is not None:
            await asyncio.wait({task}, timeout=within)

    def stop(self) -> None:
        """Stop writing: cancel the drain task and forget the outbox."""
        self.closed = True
        task, self._drain_task = self._drain_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        self._queue = None
        self._queued = 0


def _start_eagerly(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
    """Run ``coro`` now, until it first has to wait; return a task for the rest.

    Most socket writes complete without waiting (the kernel takes the bytes), so
    the frame goes out within the fan-out loop and no task is created: a task per
    frame per connection was the largest cost of a broadcast. Only a write that
    must wait (a full buffer) gets a task, which resumes the coroutine where it
    stopped. This is what Python 3.12's eager tasks do, available on 3.11 too.

    Returns:
        None if ``coro`` finished, else the task that finishes it.
    """
    try:
        awaited = coro.send(None)
    except StopIteration:
        return None
    return asyncio.get_running_loop().create_task(_finish(coro, awaited))


async def _finish(coro: Coroutine[Any, Any, None], awaited: Any) -> None:
    """Drive ``coro`` from where :func:`_start_eagerly` left it, as a Task would."""
    while True:
        try:
            if isinstance(awaited, asyncio.Future):
                awaited._asyncio_future_blocking = False
                await _done(awaited)
            else:  # a bare yield, as in asyncio.sleep(0)
                await asyncio.sleep(0)
        except asyncio.CancelledError as exc:
            # Cancelling this task cancels what the coroutine waits for, and
            # delivers the cancellation into it, like Task.cancel().
            if isinstance(awaited, asyncio.Future):
                awaited.cancel()
            try:
                awaited = coro.throw(exc)
            except StopIteration:
                return  # the coroutine swallowed the cancellation
            continue  # (a CancelledError it re-raises propagates: the task is cancelled)
        try:
            awaited = coro.send(None)
        except StopIteration:
            return


async def _done(future: asyncio.Future[Any]) -> None:
    """Wait until ``future`` is done, without raising its exception here."""
    if not future.done():
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def wake(_: asyncio.Future[Any]) -> None:
            if not waiter.done():
                waiter.set_result(None)

        future.add_done_callback(wake)
        try:
            await waiter
        finally:
            future.remove_done_callback(wake)
