"""Deprecated: import these from :mod:`svc_infra.websocket.djangoapp.auth`.

Importing a name from here still works, with a ``DeprecationWarning``.
"""

from .._deprecated import moved

__all__: list[str] = []

__getattr__ = moved(
    __name__,
    "svc_infra.websocket.djangoapp.auth",
    [
        "AnonymousWSUser",
        "JWTAuthMiddleware",
        "JWTAuthMiddlewareStack",
        "RequireWSIdentityMixin",
        "WSUser",
    ],
)
