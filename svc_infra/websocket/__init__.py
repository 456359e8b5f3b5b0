"""Real-time WebSocket infrastructure for Django and FastAPI applications.

The public API is re-exported here; the modules behind it are implementation
details whose layout may change.
"""

from .client import WebSocketClient, easy_websocket_client
from .config import WebSocketConfig, get_default_config
from .exceptions import (
    AuthenticationError,
    ConfigurationError,
    ConnectionClosedError,
    ConnectionFailedError,
    MessageTooLargeError,
    WebSocketError,
)
from .models import ConnectionInfo, ConnectionState, WebSocketMessage
from .reconnect import websocket_connect

__all__ = [
    # Client
    "WebSocketClient",
    "websocket_connect",
    "easy_websocket_client",
    # Config
    "WebSocketConfig",
    "get_default_config",
    # Models
    "ConnectionState",
    "WebSocketMessage",
    "ConnectionInfo",
    # Exceptions
    "WebSocketError",
    "ConnectionClosedError",
    "ConnectionFailedError",
    "AuthenticationError",
    "MessageTooLargeError",
    "ConfigurationError",
]
