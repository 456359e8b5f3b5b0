"""Real-time WebSocket infrastructure for Django and FastAPI applications.

The public API is re-exported here; the modules behind it are implementation
details whose layout may change (``docs/development.md``, "Architecture", draws
it). This module is also where the parts are wired together: it is the only one
that knows both the core and every framework integration. Names that need a web
framework (``add_websocket_manager``, ``get_ws_manager``) are imported on first
use, so importing this package loads neither Django nor Starlette.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .client import WebSocketClient, easy_websocket_client, websocket_connect
from .config import WebSocketConfig, get_default_config
from .exceptions import (
    AuthenticationError,
    ChannelLayerError,
    ConfigurationError,
    ConnectionClosedError,
    ConnectionFailedError,
    MessageTooLargeError,
    ServerDrainingError,
    TooManyConnectionsError,
    WebSocketError,
)
from .manager import ConnectionManager, ManagerStats, process_manager, set_process_manager_provider
from .models import ConnectionInfo, ConnectionState, WebSocketMessage
from .server.connection import CLOSE_SLOW_CONSUMER
from .server.queries import ClusterView, PresenceCounts
from .server.transport import register_transport_loader

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
    "ClusterView",
    "PresenceCounts",
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
    "TooManyConnectionsError",
    "ServerDrainingError",
]


# --- wiring: the integrations register themselves when imported; these loaders
# import them the first time their framework's socket (or Django) shows up.


def _load_starlette() -> None:
    from .integrations import starlette  # noqa: F401  (registers StarletteTransport)


def _load_channels() -> None:
    from .djangoapp import consumers  # noqa: F401  (registers ChannelsTransport)


def _django_process_manager(alias: str) -> ConnectionManager:
    from .djangoapp import get_process_manager

    return get_process_manager(alias)


register_transport_loader("starlette.websockets", "WebSocket", _load_starlette)
register_transport_loader("channels.generic.websocket", "AsyncWebsocketConsumer", _load_channels)
set_process_manager_provider(_django_process_manager)


def easy_websocket_manager(
    app: Any = None,
    *,
    layer: Any = None,
    redis_url: str | None = None,
    channel_prefix: str | None = None,
    **config_overrides: Any,
) -> ConnectionManager:
    """Build a configured manager in one call, and attach it to ``app`` if given.

    Settings come from the ``WS_*`` variables, then ``config_overrides``
    (``outbox_limit=...``, ``close_timeout=...``)::

        manager = easy_websocket_manager(app, redis_url="redis://localhost:6379/0")

    With a Starlette/FastAPI ``app`` this is :func:`add_websocket_manager`.

    Raises:
        ConfigurationError: If a setting is invalid.
        TypeError: If an override is not a configuration field.
    """
    config = get_default_config(**config_overrides)
    manager = ConnectionManager(
        layer, redis_url=redis_url, channel_prefix=channel_prefix, config=config
    )
    if app is not None:
        from .integrations.starlette import add_websocket_manager

        add_websocket_manager(app, manager)
    return manager


def __getattr__(name: str) -> Any:
    if name in ("add_websocket_manager", "get_ws_manager"):
        try:
            from .integrations import starlette
        except ImportError:  # a Django-only installation, without Starlette
            if name == "get_ws_manager":
                return lambda alias="default": process_manager(alias)
            raise
        return getattr(starlette, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
