"""The documented import path of the Channels auth middleware (re-exported).

It lives with the rest of the Django glue, in :mod:`svc_infra.websocket.djangoapp.auth`.
"""

from ..djangoapp.auth import (
    AnonymousWSUser,
    JWTAuthMiddleware,
    JWTAuthMiddlewareStack,
    RequireWSIdentityMixin,
    WSUser,
)

__all__ = [
    "AnonymousWSUser",
    "JWTAuthMiddleware",
    "JWTAuthMiddlewareStack",
    "RequireWSIdentityMixin",
    "WSUser",
]
