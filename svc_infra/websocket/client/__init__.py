"""The client side: connect to a WebSocket server, reconnect with backoff, a CLI.

Built on the ``websockets`` library; imports nothing of the server side.

- :mod:`._connection`: :class:`WebSocketClient`, :func:`easy_websocket_client`.
- :mod:`._reconnect`: :func:`websocket_connect` (the reconnect loop), :func:`backoff_delay`.
- :mod:`.cli`: ``python -m svc_infra.websocket URL``.
"""

from ._connection import WebSocketClient, easy_websocket_client
from ._reconnect import backoff_delay, websocket_connect

__all__ = ["WebSocketClient", "backoff_delay", "easy_websocket_client", "websocket_connect"]
