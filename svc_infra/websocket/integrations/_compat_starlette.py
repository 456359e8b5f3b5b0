"""The one place that touches Starlette's private ``WebSocket`` attributes.

Starlette's ``WebSocket`` keeps the ASGI ``receive`` and ``send`` it was built with
as ``_receive`` and ``_send``. We use them for speed and for a guard:

- a broadcast writes one frame to every connection; the ASGI ``send`` called
  directly skips Starlette's per-call state checks (the transport checks the
  state itself first), a large share of a delivery's cost;
- the manager's inbound limits see every message before the route does, by
  wrapping the ASGI ``receive`` that ``WebSocket.receive()`` awaits.

``tests/websocket/integrations/test_compat_starlette.py`` pins both behaviours on
the installed Starlette, so a release that changes them fails our CI.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.types import Message
from starlette.websockets import WebSocket

__all__ = ["asgi_send", "wrap_receive"]

Receive = Callable[[], Awaitable[Message]]


def asgi_send(websocket: WebSocket) -> Callable[[Message], Any]:
    """The ASGI ``send`` the socket was built with (it does not change)."""
    send: Callable[[Message], Any] = websocket._send
    return send


def wrap_receive(websocket: WebSocket, wrap: Callable[[Receive], Receive]) -> None:
    """Make ``WebSocket.receive()`` await ``wrap(receive)`` instead of the ASGI
    ``receive`` it was built with."""
    websocket._receive = wrap(websocket._receive)
