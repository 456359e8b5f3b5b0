"""FastAPI: the spec's auth exports for WebSocket routes.

Types (``WSPrincipal``, ``WSIdentity``, ``OptionalWSIdentity``), guards
(``RequireWSIdentity``, ``AllowWSIdentity``, ``RequireWSScopes``,
``RequireWSAnyScope``) and routers (``ws_*_router``). See ``docs/auth.md``.
"""

from ._ws_auth import (
    AllowWSIdentity,
    OptionalWSIdentity,
    RequireWSAnyScope,
    RequireWSIdentity,
    RequireWSScopes,
    WSIdentity,
    WSPrincipal,
)
from .dual import (
    ws_optional_router,
    ws_protected_router,
    ws_public_router,
    ws_scopes_router,
    ws_user_router,
)

__all__ = [
    # Types
    "WSPrincipal",
    "WSIdentity",
    "OptionalWSIdentity",
    # Guards
    "RequireWSIdentity",
    "AllowWSIdentity",
    "RequireWSScopes",
    "RequireWSAnyScope",
    # Routers
    "ws_public_router",
    "ws_protected_router",
    "ws_user_router",
    "ws_scopes_router",
    "ws_optional_router",
]
