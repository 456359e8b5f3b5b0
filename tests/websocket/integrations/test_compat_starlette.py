"""What _compat_starlette relies on, pinned on the installed Starlette."""

from __future__ import annotations

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
