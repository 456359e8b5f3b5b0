"""Starlette and FastAPI: the socket adapter, ``add_websocket_manager``, ``get_ws_manager``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from typing import Any

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message
from starlette.websockets import WebSocket, WebSocketState

from ..exceptions import ServerDrainingError, TooManyConnectionsError, WebSocketError
from ..layer_messages import Frame
from ..manager import ConnectionManager, process_manager
from ..server.transport import AsgiTransport, register_transport
from ._compat_starlette import asgi_send, wrap_receive
from ._compat_uvicorn import direct_writer

__all__ = ["StarletteTransport", "add_metrics_route", "add_websocket_manager", "get_ws_manager"]

logger = logging.getLogger("svc_infra.websocket.manager")

# Where the manager lives on the application.
STATE_KEY = "ws_manager"


class StarletteTransport(AsgiTransport):
    """A Starlette/FastAPI ``WebSocket`` as the manager sees it."""

    __slots__ = ("_asgi_send", "_direct", "websocket", "write_now")

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket
        self._asgi_send = asgi_send(websocket)
        # uvicorn's websockets-sansio: a broadcast's frame encoded once (_compat_uvicorn).
        self._direct = direct_writer(self._asgi_send)
        #: ``write_now(frame)`` where the server allows writing at once, else None:
        #: on another server a delivery makes no call that can only say no.
        self.write_now: Callable[[Frame], bool] | None = (
            None if self._direct is None else self._write_now
        )

    @property
    def accepted(self) -> bool:
        return self.websocket.application_state is not WebSocketState.CONNECTING

    @property
    def scope(self) -> Any:
        return self.websocket.scope

    def guard_inbound(self, check: Callable[[Mapping[str, Any]], tuple[int, str] | None]) -> None:
        """Run ``check`` on every message the client sends, before the route sees it;
        when it answers (code, reason), close with it and give the route a disconnect."""
        wrap_receive(self.websocket, lambda receive: _GuardedReceive(receive, check, self))

    async def accept(self, subprotocol: str | None = None) -> None:
        await self.websocket.accept(subprotocol=subprotocol)

    def _write_now(self, frame: Frame) -> bool:
        """Write ``frame`` at once, without a coroutine (:mod:`._compat_uvicorn`);
        False if it must take :meth:`send`."""
        if self.websocket.application_state is not _CONNECTED:
            return False
        return self._direct.write(frame)  # type: ignore[union-attr]

    def send(self, frame: Frame) -> Coroutine[Any, Any, None]:
        """Send a text or binary frame (a coroutine, as
        :class:`~svc_infra.websocket.server.transport.Transport` asks).

        Raises:
            Exception: Whatever the server's ASGI ``send`` raises for a socket that
                is gone (the manager drops the connection).
        """
        ws = self.websocket
        if ws.application_state is not _CONNECTED:
            return ws.send(_message(frame))  # Starlette raises what it raises
        # The fan-out's hot path: not a coroutine of its own but the ASGI send's,
        # past Starlette's per-call checks (what they guard is checked above),
        # with one message dict per frame for every connection it goes to (the
        # cache lookup inlined: this runs once per delivery).
        last_frame, message = _last
        if frame is not last_frame:
            message = _message(frame)
        return self._asgi_send(message)  # type: ignore[no-any-return]

    async def close(self, code: int = 1000, reason: str = "") -> None:
        ws = self.websocket
        if ws.application_state is WebSocketState.DISCONNECTED:
            return
        if ws.client_state is WebSocketState.DISCONNECTED:
            return
        # The client may vanish between the check and the send: that is fine.
        with contextlib.suppress(Exception):
            await ws.close(int(code), reason)  # a plain int, whatever the server


register_transport(WebSocket, StarletteTransport)
_CONNECTED = WebSocketState.CONNECTED


class _GuardedReceive:
    """A socket's ASGI ``receive`` with the inbound check in front (an object with
    slots, not a closure: it is one per connection)."""

    __slots__ = ("check", "inner", "transport")

    def __init__(
        self,
        inner: Callable[[], Awaitable[Message]],
        check: Callable[[Mapping[str, Any]], tuple[int, str] | None],
        transport: StarletteTransport,
    ) -> None:
        self.inner, self.check, self.transport = inner, check, transport

    async def __call__(self) -> Message:
        message = await self.inner()
        if message.get("type") == "websocket.receive":
            verdict = self.check(message)
            if verdict is not None:
                code, reason = verdict
                await self._close(code, reason)
                return {"type": "websocket.disconnect", "code": code, "reason": reason}
        return message

    async def _close(self, code: int, reason: str) -> None:
        # The client may still be sending (it is flooding us, after all). A
        # server that finishes the close handshake only once its inbound queue
        # has room for the client's close reply (uvicorn's legacy ``websockets``
        # implementation, its default before 0.50) would otherwise hold the
        # close for its whole close timeout: read and drop meanwhile.
        discard = asyncio.ensure_future(self._discard())
        try:
            await self.transport.close(code, reason)
        finally:
            discard.cancel()

    async def _discard(self) -> None:
        # Whatever the server answers once the socket is gone is no news here.
        with contextlib.suppress(Exception):
            while (await self.inner()).get("type") == "websocket.receive":
                pass


# The last frame sent and its ASGI message. A fan-out sends one frame object to
# every connection in turn, so this builds its message once, not once per
# connection. Sharing is safe: servers and Starlette only read the message.
_last: tuple[Frame, Message] = ("", {"type": "websocket.send", "text": ""})


def _message(frame: Frame) -> Message:
    global _last
    last_frame, message = _last
    if frame is last_frame:
        return message
    if isinstance(frame, str):
        message = {"type": "websocket.send", "text": frame}
    else:
        message = {"type": "websocket.send", "bytes": frame}
    _last = (frame, message)
    return message


def _find_app(obj: Any) -> Any:
    if isinstance(obj, HTTPConnection):
        return obj.app
    return obj


def get_ws_manager(
    # Annotated exactly HTTPConnection, or FastAPI would not inject it.
    request_or_websocket_or_app: HTTPConnection = None,  # type: ignore[assignment]
    *,
    alias: str = "default",
) -> ConnectionManager:
    """Return the manager that :func:`add_websocket_manager` put on the app.

    Takes a ``Request``, a ``WebSocket`` or the app itself, and works as a
    FastAPI dependency in HTTP and WebSocket routes::

        @app.get("/ws/stats")
        async def stats(manager: ConnectionManager = Depends(get_ws_manager)): ...

    With no argument, in a Django process: the process's manager on
    ``CHANNEL_LAYERS[alias]``.

    Raises:
        WebSocketError: If the app has no manager.
    """
    target: Any = request_or_websocket_or_app
    if target is None:
        return process_manager(alias)
    app = _find_app(target)
    state = getattr(app, "state", None)
    manager = getattr(state, STATE_KEY, None)
    if not isinstance(manager, ConnectionManager):
        raise WebSocketError(
            "this application has no ConnectionManager: call add_websocket_manager(app) first"
        )
    return manager


def add_websocket_manager(
    app: Any, manager: ConnectionManager | None = None, *, close_on_signals: bool = True
) -> ConnectionManager:
    """Attach a manager to a Starlette or FastAPI app and tie it to the app's lifespan.

    On startup the manager starts (its layer channel and receive task). On
    shutdown every socket still open is closed with 1001 (going away). A route
    whose ``connect()`` raised :exc:`TooManyConnectionsError` ends quietly. Apps
    with and without a ``lifespan=`` of their own work; the manager starts
    before the app's own startup and stops after its shutdown.

    uvicorn closes WebSockets with 1012 before running the lifespan shutdown.
    With ``close_on_signals`` (the default, main thread only), SIGINT/SIGTERM first
    drain the manager (:meth:`ConnectionManager.drain`: every socket closed with
    1001, in batches), then reach the server's own handler.

    Args:
        app: A ``Starlette`` or ``FastAPI`` application.
        manager: The manager to attach; a new ``ConnectionManager()`` by default.
        close_on_signals: Drain when a shutdown signal arrives.

    Returns:
        The manager, also available as ``app.state.ws_manager`` and through
        :func:`get_ws_manager`.
    """
    manager = manager if manager is not None else ConnectionManager()
    setattr(app.state, STATE_KEY, manager)
    router = getattr(app, "router", None)
    if router is None or not hasattr(router, "lifespan_context"):
        raise TypeError(f"expected a Starlette or FastAPI app, got {type(app).__name__}")
    inner = router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app_: ASGIApp) -> AsyncIterator[Mapping[str, Any] | None]:
        await manager.start()
        restore = manager.drain_on_signals() if close_on_signals else None
        try:
            async with inner(app_) as state:
                yield state
        finally:
            if restore is not None:
                restore()
            await manager.shutdown()  # 1001, "server shutting down"

    router.lifespan_context = lifespan
    # A connection over the per-user cap (closed with 4008 by connect()), or one
    # that came while draining (1001): end the route there, without a traceback.
    app.add_exception_handler(TooManyConnectionsError, _refused)
    app.add_exception_handler(ServerDrainingError, _refused)
    return manager


async def _refused(websocket: Any, exc: Exception) -> None:
    logger.info("%s", exc)


def add_metrics_route(
    app: Any, manager: ConnectionManager | None = None, *, path: str = "/metrics"
) -> None:
    """Serve the manager's Prometheus metrics at ``path`` (the ``metrics`` extra).

    The manager defaults to the one :func:`add_websocket_manager` attached. The
    metrics are synced on each scrape and once a second while the app runs (for
    ``PROMETHEUS_MULTIPROC_DIR`` with ``uvicorn --workers N``).

    Raises:
        ImportError: Without ``prometheus_client``.
    """
    from starlette.requests import Request
    from starlette.responses import Response

    from ..metrics import instrument

    metrics = instrument(manager if manager is not None else get_ws_manager(app))

    async def endpoint(request: Request) -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    app.add_route(path, endpoint, methods=["GET"], include_in_schema=False)
    router = app.router
    inner = router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app_: ASGIApp) -> AsyncIterator[Mapping[str, Any] | None]:
        metrics.start()
        try:
            async with inner(app_) as state:
                yield state
        finally:
            await metrics.stop()

    router.lifespan_context = lifespan
