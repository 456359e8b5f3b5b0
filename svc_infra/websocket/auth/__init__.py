"""JWT (and API key) authentication for WebSocket handshakes.

:mod:`.core` works on ASGI scopes with no framework; the FastAPI side lives in
:mod:`svc_infra.api.fastapi.dx`, the Channels side in
:mod:`svc_infra.websocket.djangoapp.auth`.
"""

from .core import (
    CLOSE_POLICY_VIOLATION,
    MAX_TOKEN_LENGTH,
    REASONS,
    Credential,
    JWTSettings,
    WSAuthError,
    WSPrincipal,
    allowed_origins,
    authenticate,
    check_origin,
    find_credential,
    register_api_key_verifier,
    verify_token,
)

__all__ = [
    "CLOSE_POLICY_VIOLATION",
    "MAX_TOKEN_LENGTH",
    "REASONS",
    "Credential",
    "JWTSettings",
    "WSAuthError",
    "WSPrincipal",
    "allowed_origins",
    "authenticate",
    "check_origin",
    "find_credential",
    "register_api_key_verifier",
    "verify_token",
]
