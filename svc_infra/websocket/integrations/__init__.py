"""Adapters from framework sockets to the manager's :class:`Transport`.

Each adapter lives in its own module and imports its framework; this module
picks one by the socket's type without importing any framework itself.
"""

from __future__ import annotations

from typing import Any

from ..connection import Transport

__all__ = ["adapt"]


def adapt(websocket: Any) -> Transport:
    """Wrap ``websocket`` in the :class:`Transport` for its framework.

    Raises:
        TypeError: If the socket's type is not supported.
    """
    if isinstance(websocket, Transport):
        return websocket
    for cls in type(websocket).__mro__:
        module = cls.__module__
        if module == "starlette.websockets" and cls.__name__ == "WebSocket":
            from .starlette import StarletteTransport

            return StarletteTransport(websocket)
        if module == "channels.generic.websocket" and cls.__name__ == "AsyncWebsocketConsumer":
            from .channels import ChannelsTransport

            return ChannelsTransport(websocket)
    raise TypeError(
        f"unsupported websocket type {type(websocket).__module__}.{type(websocket).__name__}: "
        "expected a Starlette/FastAPI WebSocket, a Channels AsyncWebsocketConsumer, "
        "or a Transport"
    )
