"""FastAPI types and guards for authenticated WebSocket routes; import them from :mod:`.dx`.

``WSIdentity`` and ``OptionalWSIdentity`` are annotated types for route
parameters; ``RequireWSIdentity``, ``AllowWSIdentity``, ``RequireWSScopes(...)``
and ``RequireWSAnyScope(...)`` are guards for ``dependencies=[...]``. Every
refusal happens before the socket is accepted: close 1008 with a documented
reason (``docs/auth.md``), which the server answers with HTTP 403. On an HTTP
route the same guards answer 401 (missing or invalid credential) or 403
(insufficient scope, foreign origin).

A credential that is present but invalid is refused even where identity is
optional: a client that sends a bad token should learn so, not be served as
anonymous.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, HTTPException
from fastapi.exceptions import WebSocketException
from starlette.requests import HTTPConnection

from svc_infra.websocket.auth.core import (
    WSAuthError,
    WSPrincipal,
    allowed_origins,
    authenticate,
    check_origin,
)

__all__ = [
    "AllowWSIdentity",
    "OptionalWSIdentity",
    "RequireWSAnyScope",
    "RequireWSIdentity",
    "RequireWSScopes",
    "WSIdentity",
    "WSPrincipal",
    "check_ws_origin",
    "optional_principal",
    "protected_principal",
    "require_principal",
]

# Where the principal is kept on the scope, as the Channels middleware does;
# a second key tells "authenticated, anonymous" from "not looked at yet".
_PRINCIPAL = "principal"
_DONE = "svc_infra.ws_auth"


def _refuse(conn: HTTPConnection, error: WSAuthError) -> Exception:
    if conn.scope.get("type") == "websocket":
        return WebSocketException(code=error.code, reason=error.reason)
    # HTTP: 401 when the credential is missing or invalid, 403 when it is valid
    # but not enough (scope) or the request comes from a foreign origin.
    status = 403 if error.key in ("scope", "origin") else 401
    return HTTPException(status_code=status, detail=error.reason)


async def _principal(conn: HTTPConnection, *, required: bool, api_keys: bool) -> WSPrincipal | None:
    scope = conn.scope
    if scope.get(_DONE):
        principal = scope.get(_PRINCIPAL)
        if principal is None and required:
            raise _refuse(conn, WSAuthError("missing"))
        return principal if isinstance(principal, WSPrincipal) else None
    try:
        principal = await authenticate(scope, required=required, api_keys=api_keys)
    except WSAuthError as error:
        raise _refuse(conn, error) from None
    scope[_PRINCIPAL] = principal
    scope[_DONE] = True
    return principal


async def require_principal(request_or_websocket: HTTPConnection) -> WSPrincipal:
    """A JWT is required (or what a router guard already accepted)."""
    principal = await _principal(request_or_websocket, required=True, api_keys=False)
    assert principal is not None
    return principal


async def protected_principal(request_or_websocket: HTTPConnection) -> WSPrincipal:
    """A JWT or, when a verifier is registered, an API key is required."""
    principal = await _principal(request_or_websocket, required=True, api_keys=True)
    assert principal is not None
    return principal


async def optional_principal(request_or_websocket: HTTPConnection) -> WSPrincipal | None:
    """The principal if a credential came; None if none did; refused if invalid."""
    return await _principal(request_or_websocket, required=False, api_keys=False)


async def check_ws_origin(request_or_websocket: HTTPConnection) -> None:
    """Refuse a foreign ``Origin`` when ``WS_ALLOWED_ORIGINS`` is set."""
    try:
        check_origin(request_or_websocket.scope, allowed_origins())
    except WSAuthError as error:
        raise _refuse(request_or_websocket, error) from None


WSIdentity = Annotated[WSPrincipal, Depends(require_principal)]
"""A route parameter: the authenticated principal; the handshake is refused without one."""

OptionalWSIdentity = Annotated[WSPrincipal | None, Depends(optional_principal)]
"""A route parameter: the principal, or None when no credential came."""

RequireWSIdentity = Depends(require_principal)
"""A guard for ``dependencies=[...]``: identity required."""

AllowWSIdentity = Depends(optional_principal)
"""A guard for ``dependencies=[...]``: identity optional, invalid credentials refused."""


def RequireWSScopes(*scopes: str, api_keys: bool = False) -> Any:  # noqa: N802 - reads as a type
    """A guard: the principal must have every one of ``scopes``."""
    base = protected_principal if api_keys else require_principal

    async def guard(conn: HTTPConnection, principal: WSPrincipal = Depends(base)) -> WSPrincipal:
        if not principal.has_scopes(*scopes):
            raise _refuse(conn, WSAuthError("scope"))
        return principal

    return Depends(guard)


def RequireWSAnyScope(*scopes: str) -> Any:  # noqa: N802 - reads as a type
    """A guard: the principal must have at least one of ``scopes``."""

    async def guard(
        conn: HTTPConnection, principal: WSPrincipal = Depends(require_principal)
    ) -> WSPrincipal:
        if not principal.has_any_scope(*scopes):
            raise _refuse(conn, WSAuthError("scope"))
        return principal

    return Depends(guard)
