"""Real-time WebSocket infrastructure for Django and FastAPI applications.

The public API is re-exported here; the modules behind it are implementation
details whose layout may change. Names that need a web framework
(``add_websocket_manager``, ``get_ws_manager``) are imported on first use, so
importing this package loads neither Django nor Starlette.
"""

from typing import TYPE_CHECKING, Any

from .client import WebSocketClient, easy_websocket_client
from .config import WebSocketConfig, get_default_config
from .connection import CLOSE_SLOW_CONSUMER
from .exceptions import (
    AuthenticationError,
    ChannelLayerError,
    ConfigurationError,
    ConnectionClosedError,
    ConnectionFailedError,
    MessageTooLargeError,
    WebSocketError,
)
from .manager import ConnectionManager, ManagerStats, easy_websocket_manager
from .models import ConnectionInfo, ConnectionState, WebSocketMessage
from .reconnect import websocket_connect

if TYPE_CHECKING:
    from .integrations.starlette import add_websocket_manager, get_ws_manager

__all__ = [
    # Client
    "WebSocketClient",
    "websocket_connect",
    "easy_websocket_client",
    # Server
    "ConnectionManager",
    "easy_websocket_manager",
    "add_websocket_manager",
    "get_ws_manager",
    "ManagerStats",
    "CLOSE_SLOW_CONSUMER",
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
    "ChannelLayerError",
    "ConfigurationError",
]


def __getattr__(name: str) -> Any:
    if name in ("add_websocket_manager", "get_ws_manager"):
        try:
            from .integrations import starlette
        except ImportError:  # a Django-only installation, without Starlette
            if name == "get_ws_manager":
                from .djangoapp import get_process_manager

                return lambda alias="default": get_process_manager(alias)
            raise
        return getattr(starlette, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
