"""The one place that touches Starlette's private ``WebSocket`` attributes.

Starlette's ``WebSocket`` keeps the ASGI ``receive`` and ``send`` it was built with
as ``_receive`` and ``_send``. We use them for speed and for a guard:

- a broadcast writes one frame to every connection; the ASGI ``send`` called
  directly skips Starlette's per-call state checks (the transport checks the
  state itself first), a large share of a delivery's cost;
- the manager's inbound limits see every message before the route does, by
  wrapping the ASGI ``receive`` that ``WebSocket.receive()`` awaits;
- Starlette's exception handling wraps ``send`` once per layer that has it (the
  app's ``ExceptionMiddleware`` and the route: ``wrap_app_handling_exceptions``),
  in a coroutine that notes ``http.response.start`` and forwards everything else.
  For a WebSocket's frames it only forwards, at the cost of one more coroutine
  per delivery (about a tenth of a broadcast's CPU, measured): the frames skip
  it when what it forwards to is a coroutine function (uvicorn's, Daphne's),
  not when it is another kind of awaitable (granian's). Any other middleware's
  wrapper stays.

``tests/websocket/integrations/test_compat_starlette.py`` pins both behaviours on
the installed Starlette, so a release that changes them fails our CI.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.types import Message
from starlette.websockets import WebSocket

__all__ = ["asgi_send", "wrap_receive"]

Receive = Callable[[], Awaitable[Message]]


#: ``__qualname__`` of the ``send`` wrapper of Starlette's exception handling.
_HANDLER_SENDER = "wrap_app_handling_exceptions.<locals>.wrapped_app.<locals>.sender"


def asgi_send(websocket: WebSocket) -> Callable[[Message], Any]:
    """The ASGI ``send`` the socket was built with (it does not change), past
    Starlette's exception-handling wrappers (see the module)."""
    send: Callable[[Message], Any] = websocket._send
    while (inner := _handler_inner_send(send)) is not None:
        send = inner
    return send


def _handler_inner_send(send: Any) -> Callable[[Message], Any] | None:
    """The ``send`` that Starlette's exception-handling ``sender`` forwards to, or
    None if ``send`` is not that wrapper (or it no longer looks as expected)."""
    if getattr(send, "__qualname__", None) != _HANDLER_SENDER:
        return None
    if getattr(send, "__module__", None) != "starlette._exception_handler":
        return None
    code, cells = getattr(send, "__code__", None), getattr(send, "__closure__", None)
    if code is None or cells is None:
        return None
    free = dict(zip(code.co_freevars, cells, strict=True))
    if "send" not in free:
        return None
    inner = free["send"].cell_contents
    # Only a coroutine function: the manager drives a frame's send coroutine by
    # hand (``coroutine.send(None)``), which the wrapper's coroutine allows whatever
    # the server's send returns, and which an awaitable of another kind (granian's,
    # from Rust) does not support.
    return inner if inspect.iscoroutinefunction(inner) else None


def wrap_receive(websocket: WebSocket, wrap: Callable[[Receive], Receive]) -> None:
    """Make ``WebSocket.receive()`` await ``wrap(receive)`` instead of the ASGI
    ``receive`` it was built with."""
    websocket._receive = wrap(websocket._receive)
