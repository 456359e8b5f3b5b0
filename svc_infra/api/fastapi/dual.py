"""Routers that serve each path with and without the trailing slash, and WebSocket routers.

``ws_public_router``, ``ws_protected_router``, ``ws_user_router``,
``ws_scopes_router`` and ``ws_optional_router`` return a :class:`DualAPIRouter`
whose routes carry the matching guard (see :mod:`svc_infra.api.fastapi.dx`, the
home of the auth types and guards, which re-exports these routers as the spec
documents).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fastapi import APIRouter, Depends
from fastapi import params as fastapi_params

from ...websocket._deprecated import moved
from . import _ws_auth as ws_auth

__all__ = [
    "DualAPIRouter",
    "ws_optional_router",
    "ws_protected_router",
    "ws_public_router",
    "ws_scopes_router",
    "ws_user_router",
]


# The auth names were importable from here too; their home is ``dx``.
__getattr__ = moved(
    __name__,
    "svc_infra.api.fastapi.dx",
    [
        "AllowWSIdentity",
        "OptionalWSIdentity",
        "RequireWSAnyScope",
        "RequireWSIdentity",
        "RequireWSScopes",
        "WSIdentity",
        "WSPrincipal",
    ],
)


def _twin(path: str) -> str | None:
    """The same path with the trailing slash toggled, or None for the root."""
    if path in ("", "/"):
        return None
    return path[:-1] if path.endswith("/") else path + "/"


class DualAPIRouter(APIRouter):
    """An ``APIRouter`` that answers ``/path`` and ``/path/`` alike, without redirects.

    WebSocket clients do not follow redirects, so ``redirect_slashes`` cannot help
    them; every route is registered twice instead (the twin is hidden from the
    OpenAPI schema).
    """

    def add_api_route(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().add_api_route(path, endpoint, **kwargs)
        twin = _twin(path)
        if twin is not None:
            super().add_api_route(twin, endpoint, **{**kwargs, "include_in_schema": False})

    def add_api_websocket_route(
        self,
        path: str,
        endpoint: Callable[..., Any],
        name: str | None = None,
        *,
        dependencies: Sequence[fastapi_params.Depends] | None = None,
    ) -> None:
        super().add_api_websocket_route(path, endpoint, name, dependencies=dependencies)
        twin = _twin(path)
        if twin is not None:
            super().add_api_websocket_route(twin, endpoint, name, dependencies=dependencies)


def _router(guard: Any, kwargs: dict[str, Any]) -> DualAPIRouter:
    extra = kwargs.pop("dependencies", None) or ()
    return DualAPIRouter(dependencies=[guard, *extra], **kwargs)


def ws_public_router(**kwargs: Any) -> DualAPIRouter:
    """No authentication; foreign origins are still refused (``WS_ALLOWED_ORIGINS``)."""
    return _router(Depends(ws_auth.check_ws_origin), kwargs)


def ws_protected_router(**kwargs: Any) -> DualAPIRouter:
    """A valid JWT, or an API key when a verifier is registered."""
    return _router(Depends(ws_auth.protected_principal), kwargs)


def ws_user_router(**kwargs: Any) -> DualAPIRouter:
    """A valid JWT only (no API keys): routes that act for a person."""
    return _router(Depends(ws_auth.require_principal), kwargs)


def ws_scopes_router(*scopes: str, **kwargs: Any) -> DualAPIRouter:
    """A valid JWT (or API key) carrying every one of ``scopes``."""
    return _router(ws_auth.RequireWSScopes(*scopes, api_keys=True), kwargs)


def ws_optional_router(**kwargs: Any) -> DualAPIRouter:
    """Identity if a credential came (``OptionalWSIdentity``); an invalid one is refused."""
    return _router(Depends(ws_auth.optional_principal), kwargs)
