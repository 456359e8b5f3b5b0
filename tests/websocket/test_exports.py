"""The public API: the names exported, and what importing pulls in."""

from __future__ import annotations

import subprocess
import sys

import svc_infra.websocket as ws

# The spec's module exports, plus ConfigurationError, ManagerStats,
# CLOSE_SLOW_CONSUMER, TooManyConnectionsError, ServerDrainingError, and the types
# of manager.cluster (ClusterView, PresenceCounts).
EXPECTED = {
    "WebSocketClient",
    "websocket_connect",
    "easy_websocket_client",
    "ConnectionManager",
    "easy_websocket_manager",
    "add_websocket_manager",
    "get_ws_manager",
    "ManagerStats",
    "CLOSE_SLOW_CONSUMER",
    "ClusterView",
    "PresenceCounts",
    "WebSocketConfig",
    "get_default_config",
    "ConnectionState",
    "WebSocketMessage",
    "ConnectionInfo",
    "WebSocketError",
    "ConnectionClosedError",
    "ConnectionFailedError",
    "AuthenticationError",
    "MessageTooLargeError",
    "ConfigurationError",
    "ChannelLayerError",
    "TooManyConnectionsError",
    "ServerDrainingError",
}


def test_all_is_pinned() -> None:
    """__all__ lists exactly the documented names, once each, and all resolve."""
    assert len(ws.__all__) == len(set(ws.__all__))
    assert set(ws.__all__) == EXPECTED
    for name in ws.__all__:
        assert getattr(ws, name) is not None


def test_spec_import_block_works() -> None:
    """The spec's "Module Exports" import runs as written."""
    exec(
        "from svc_infra.websocket import (WebSocketClient, websocket_connect,"
        " easy_websocket_client, ConnectionManager, easy_websocket_manager,"
        " add_websocket_manager, get_ws_manager, WebSocketConfig, get_default_config,"
        " ConnectionState, WebSocketMessage, ConnectionInfo, WebSocketError,"
        " ConnectionClosedError, ConnectionFailedError, AuthenticationError,"
        " MessageTooLargeError)",
        {},
    )


def test_star_import_gives_the_public_names() -> None:
    """from svc_infra.websocket import * binds the public API and nothing private."""
    namespace: dict[str, object] = {}
    exec("from svc_infra.websocket import *", namespace)
    assert set(namespace) - {"__builtins__"} == EXPECTED


FRAMEWORKS = {"django", "channels", "starlette", "fastapi", "daphne", "uvicorn"}


def frameworks_loaded_by(*modules: str) -> list[str]:
    """The web-framework modules a fresh interpreter loads when importing ``modules``."""
    code = (
        f"import sys, {', '.join(modules)};"
        f"print(','.join(m for m in sys.modules if m.split('.')[0] in {sorted(FRAMEWORKS)!r}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return [m for m in out.stdout.strip().split(",") if m]


def test_core_imports_no_web_framework() -> None:
    """Importing the package, manager included, loads no Django, Channels or Starlette."""
    assert (
        frameworks_loaded_by(
            "svc_infra.websocket",
            "svc_infra.websocket.__main__",
            "svc_infra.websocket.manager",
            "svc_infra.websocket.testing",
        )
        == []
    )


def test_package_is_typed() -> None:
    """The distribution ships py.typed so users' type checkers see our annotations."""
    from importlib.resources import files

    assert files("svc_infra").joinpath("py.typed").is_file()


def test_spec_auth_exports() -> None:
    """The spec's "Auth Exports" import block runs as written, and __all__ pins it."""
    import svc_infra.api.fastapi.dual as dual
    import svc_infra.api.fastapi.dx as dx

    exec(
        "from svc_infra.api.fastapi.dx import (WSPrincipal, WSIdentity, OptionalWSIdentity,"
        " RequireWSIdentity, AllowWSIdentity, RequireWSScopes, RequireWSAnyScope,"
        " ws_public_router, ws_protected_router, ws_user_router, ws_scopes_router,"
        " ws_optional_router)",
        {},
    )
    assert set(dx.__all__) == {
        "WSPrincipal",
        "WSIdentity",
        "OptionalWSIdentity",
        "RequireWSIdentity",
        "AllowWSIdentity",
        "RequireWSScopes",
        "RequireWSAnyScope",
        "ws_public_router",
        "ws_protected_router",
        "ws_user_router",
        "ws_scopes_router",
        "ws_optional_router",
    }
    assert {"DualAPIRouter", "ws_protected_router", "ws_public_router"} <= set(dual.__all__)
    for name in (*dx.__all__, *dual.__all__):
        assert getattr(dx if name in dx.__all__ else dual, name) is not None


def test_auth_core_imports_no_web_framework() -> None:
    """The JWT core is framework-free, like the manager."""
    assert frameworks_loaded_by("svc_infra.websocket.auth") == []
