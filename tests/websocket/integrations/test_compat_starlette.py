"""What _compat_starlette relies on, pinned on the installed Starlette."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from starlette.websockets import WebSocket

from svc_infra.websocket.integrations._compat_starlette import asgi_send, wrap_receive


def scope() -> dict[str, Any]:
    return {"type": "websocket", "path": "/", "headers": [], "query_string": b""}


async def test_the_asgi_send_is_the_one_the_socket_was_built_with() -> None:
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        return {"type": "websocket.connect"}

    ws = WebSocket(scope(), receive, send)
    assert asgi_send(ws) is send
    await ws.accept()
    assert asgi_send(ws) is send, "Starlette replaced its ASGI send"
    await asgi_send(ws)({"type": "websocket.send", "text": "x"})
    assert sent[-1] == {"type": "websocket.send", "text": "x"}


async def test_receive_awaits_the_wrapped_asgi_receive() -> None:
    """WebSocket.receive() (and so iter_text, the routes) goes through the wrapper."""
    queue = [{"type": "websocket.connect"}, {"type": "websocket.receive", "text": "hi"}]
    seen: list[Any] = []

    async def receive() -> Any:
        return queue.pop(0)

    async def send(message: Any) -> None:
        pass

    def wrap(inner: Any) -> Any:
        async def guarded() -> Any:
            message = await inner()
            seen.append(message)
            return message

        return guarded

    ws = WebSocket(scope(), receive, send)
    wrap_receive(ws, wrap)
    await ws.accept()
    assert await ws.receive_text() == "hi"
    assert [m["type"] for m in seen] == ["websocket.connect", "websocket.receive"]


async def test_starlettes_exception_handling_wrappers_are_skipped_and_nothing_else() -> None:
    """A FastAPI route's socket gets ``send`` through two of Starlette's
    exception-handling wrappers (the app's and the route's); frames skip them and
    reach the server's ``send``, and another middleware's wrapper is kept."""
    from fastapi import FastAPI
    from starlette.types import ASGIApp, Receive, Scope, Send

    built: list[Any] = []
    server_sent: list[Any] = []
    inbox = [{"type": "websocket.connect"}, {"type": "websocket.disconnect", "code": 1000}]

    class Counting:  # a user's middleware: its wrapper must stay
        def __init__(self, app: ASGIApp) -> None:
            self.app = app
            self.seen = 0

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            async def counted(message: Any) -> None:
                self.seen += 1
                await send(message)

            await self.app(scope, receive, counted)

    app = FastAPI()

    @app.websocket("/ws")
    async def route(ws: WebSocket) -> None:
        await ws.accept()
        built.append(ws)
        await asgi_send(ws)({"type": "websocket.send", "text": "x"})

    async def receive() -> Any:
        return inbox.pop(0)

    async def send(message: Any) -> None:
        server_sent.append(message)

    for middleware in (None, Counting):
        server_sent.clear()
        inbox[:] = [{"type": "websocket.connect"}, {"type": "websocket.disconnect", "code": 1000}]
        wrapped: Any = app if middleware is None else middleware(app)
        await wrapped(scope() | {"path": "/ws"}, receive, send)
        ws = built[-1]
        assert ws._send.__qualname__.endswith("sender"), "FastAPI no longer wraps send"
        if middleware is None:
            assert asgi_send(ws) is send  # every wrapper was Starlette's
        else:
            assert asgi_send(ws).__qualname__.endswith("counted")
            assert wrapped.seen == 2  # the accept and the frame
        assert server_sent[-1] == {"type": "websocket.send", "text": "x"}


async def test_a_wrapped_send_that_is_no_coroutine_function_keeps_its_wrapper() -> None:
    """granian's ASGI send returns an awaitable that is not a coroutine, which the
    manager cannot drive by hand: the exception-handling wrapper stays in front."""
    from starlette._exception_handler import wrap_app_handling_exceptions

    sent: list[Any] = []
    seen: list[Any] = []

    class RustLikeSend:  # a callable object returning a Future, as native servers do
        def __call__(self, message: Any) -> Any:
            sent.append(message)
            future = asyncio.get_running_loop().create_future()
            future.set_result(None)
            return future

    async def receive() -> Any:
        return {"type": "websocket.connect"}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(send)

    ws = WebSocket(scope(), receive, RustLikeSend())
    await wrap_app_handling_exceptions(app, ws)(scope(), receive, RustLikeSend())
    wrapper = seen[0]
    assert wrapper.__qualname__.endswith("sender")
    ws._send = wrapper
    assert asgi_send(ws) is wrapper
    coroutine = asgi_send(ws)({"type": "websocket.send", "text": "x"})
    with contextlib.suppress(StopIteration):
        coroutine.send(None)  # what the manager does: it must be a coroutine
    assert sent == [{"type": "websocket.send", "text": "x"}]
