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
