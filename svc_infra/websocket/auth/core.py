"""Authenticating a WebSocket handshake from its ASGI scope, with no web framework.

Shared by the FastAPI dependencies (:mod:`svc_infra.api.fastapi.dx`) and the
Channels middleware (:mod:`svc_infra.websocket.djangoapp.auth`).

Where the token is looked for, first found wins:

1. the ``Authorization: Bearer <token>`` header,
2. the subprotocol pair ``["bearer", "<token>"]`` (browsers cannot set headers),
3. the ``?token=<token>`` query parameter.

Every rejection is a :exc:`WSAuthError` with close code 1008 and a reason from
:data:`REASONS`; adapters close the handshake with them before accepting, which a
server turns into HTTP 403.
"""

from __future__ import annotations

import fnmatch
import inspect
import logging
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qs

import jwt

from ..close_codes import CloseCode
from ..exceptions import AuthenticationError

__all__ = [
    "CLOSE_POLICY_VIOLATION",
    "MAX_TOKEN_LENGTH",
    "REASONS",
    "ApiKeyVerifier",
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

logger = logging.getLogger("svc_infra.websocket.auth")

# RFC 6455 §7.4.1: "policy violation"; before accept, servers answer HTTP 403.
CLOSE_POLICY_VIOLATION = CloseCode.POLICY_VIOLATION

#: Handshakes refused in this process, per reason key (``svc_infra_ws_auth_refusals_total``).
REFUSALS: dict[str, int] = {}
# A JWT larger than this is refused unparsed: real tokens are well under 2 KiB.
MAX_TOKEN_LENGTH = 8192

Via = Literal["header", "subprotocol", "query", "api_key"]

# The documented close reasons (docs/auth.md).
REASONS = {
    "missing": "missing credentials",
    "malformed": "malformed token",
    "too_large": "token too large",
    "expired": "token expired",
    "not_yet_valid": "token not yet valid",
    "signature": "invalid signature",
    "algorithm": "algorithm not allowed",
    "audience": "invalid audience",
    "issuer": "invalid issuer",
    "claims": "missing required claim",
    "scope": "insufficient scope",
    "origin": "origin not allowed",
    "api_key": "invalid API key",
    "not_configured": "authentication not configured",
}


class WSAuthError(AuthenticationError):
    """Raised when a WebSocket handshake's credential is missing or refused.

    Attributes:
        code: The close code to send before accepting (1008).
        key: The entry of :data:`REASONS`; ``reason`` is its text.
    """

    def __init__(self, key: str, status: int | None = None) -> None:
        super().__init__(REASONS[key], status)
        self.key = key
        self.code = CLOSE_POLICY_VIOLATION
        REFUSALS[key] = REFUSALS.get(key, 0) + 1

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.key, self.status))


@dataclass(frozen=True, slots=True)
class WSPrincipal:
    """Who is on the other end of a WebSocket, from the JWT's claims.

    Attributes:
        id: The ``sub`` claim.
        email: The ``email`` claim, if any.
        scopes: From a ``scopes`` list claim, or a space-separated ``scope`` or
            ``scopes`` string (split on spaces, never into characters).
        claims: All the token's claims.
        via: Where the credential came from: ``header``, ``subprotocol``,
            ``query`` or ``api_key``.
    """

    id: str
    email: str | None = None
    scopes: frozenset[str] = frozenset()
    claims: Mapping[str, Any] = field(default_factory=dict)
    via: Via = "header"

    def has_scopes(self, *required: str) -> bool:
        """Whether the principal has every one of ``required``."""
        return set(required) <= self.scopes

    def has_any_scope(self, *candidates: str) -> bool:
        """Whether the principal has at least one of ``candidates``."""
        return bool(self.scopes.intersection(candidates))


@dataclass(frozen=True, slots=True)
class Credential:
    """A credential found in a handshake."""

    kind: Literal["jwt", "api_key"]
    value: str
    via: Via


# --- settings ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JWTSettings:
    """How tokens are verified.

    Read by :meth:`load` from ``AUTH_JWT__*`` environment variables, else from
    Django's ``settings.AUTH_JWT`` dict (keys without the prefix: ``SECRET``...).
    """

    secret: str | None = None
    old_secrets: tuple[str, ...] = ()
    algorithms: tuple[str, ...] = ("HS256",)
    public_key: str | None = None
    audience: str | None = None
    issuer: str | None = None
    leeway: float = 0.0

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None) -> JWTSettings:
        """Read the settings now (never at import).

        Raises:
            ConfigurationError: If a value is invalid (an algorithm ``none``, a
                leeway that is no number).
        """
        from ..exceptions import ConfigurationError

        env = os.environ if environ is None else environ
        django = _django_auth_settings()

        def get(name: str) -> str | None:
            value = env.get(f"AUTH_JWT__{name}")
            if value is None and name in django:
                raw = django[name]
                value = ",".join(raw) if isinstance(raw, list | tuple) else str(raw)
            return value.strip() if value and value.strip() else None

        algorithms = tuple(a.strip() for a in (get("ALGORITHMS") or "HS256").split(",") if a)
        for algorithm in algorithms:
            if (
                algorithm.lower() == "none"
                or algorithm not in jwt.algorithms.get_default_algorithms()
            ):
                raise ConfigurationError(
                    "AUTH_JWT__ALGORITHMS", ",".join(algorithms), "signing algorithms (never none)"
                )
        leeway_raw = get("LEEWAY") or "0"
        try:
            leeway = float(leeway_raw)
        except ValueError:
            raise ConfigurationError("AUTH_JWT__LEEWAY", leeway_raw, "seconds") from None
        old = tuple(s.strip() for s in (get("OLD_SECRETS") or "").split(",") if s.strip())
        return cls(
            secret=get("SECRET"),
            old_secrets=old,
            algorithms=algorithms,
            public_key=get("PUBLIC_KEY"),
            audience=get("AUDIENCE"),
            issuer=get("ISSUER"),
            leeway=leeway,
        )

    def keys_for(self, algorithm: str) -> list[str]:
        """Keys to try for a token signed with ``algorithm``, in order."""
        if algorithm.startswith("HS"):
            return [k for k in (self.secret, *self.old_secrets) if k]
        return [self.public_key] if self.public_key else []


def _django_auth_settings() -> Mapping[str, Any]:
    import sys

    if "django.conf" not in sys.modules:
        return {}
    from django.conf import settings

    if not settings.configured:
        return {}
    value = getattr(settings, "AUTH_JWT", None)
    return value if isinstance(value, Mapping) else {}


_warned_unconfigured = False

# PyJWT's errors and our reasons; the first match wins, so subclasses come first.
_PYJWT_REASONS: tuple[tuple[type[Exception], str], ...] = (
    (jwt.ExpiredSignatureError, "expired"),
    (jwt.ImmatureSignatureError, "not_yet_valid"),
    (jwt.InvalidAudienceError, "audience"),
    (jwt.InvalidIssuerError, "issuer"),
    (jwt.MissingRequiredClaimError, "claims"),
    (jwt.InvalidKeyError, "algorithm"),
    (jwt.InvalidTokenError, "malformed"),
)


def verify_token(token: str, settings: JWTSettings, via: Via = "header") -> WSPrincipal:
    """Verify a JWT and return its principal.

    The algorithm comes from a pinned list: ``none`` is never accepted, and the key
    is chosen by the algorithm's family (HMAC secret for HS*, public key for RS*,
    ES*, PS*, EdDSA), so a token cannot pick its own verification method. ``sub``
    and ``exp`` are required.

    Raises:
        WSAuthError: If the token is refused, with the reason why.
    """
    if len(token) > MAX_TOKEN_LENGTH:
        raise WSAuthError("too_large")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.DecodeError:
        raise WSAuthError("malformed") from None
    algorithm = header.get("alg")
    if not isinstance(algorithm, str) or algorithm not in settings.algorithms:
        raise WSAuthError("algorithm")
    keys = settings.keys_for(algorithm)
    if not keys:
        global _warned_unconfigured
        if not _warned_unconfigured:
            _warned_unconfigured = True
            variable = "AUTH_JWT__SECRET" if algorithm.startswith("HS") else "AUTH_JWT__PUBLIC_KEY"
            logger.error(
                "WebSocket authentication is not configured: set %s; every protected "
                "connection is refused until then",
                variable,
            )
        raise WSAuthError("not_configured")
    error: WSAuthError | None = None
    for key in keys:
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=settings.audience,
                issuer=settings.issuer,
                leeway=settings.leeway,
                options={"require": ["sub", "exp"], "verify_aud": settings.audience is not None},
            )
        except jwt.InvalidSignatureError:
            error = WSAuthError("signature")
            continue  # the next (older) secret may have signed it
        except jwt.InvalidTokenError as exc:
            key = next(k for kind, k in _PYJWT_REASONS if isinstance(exc, kind))
            raise WSAuthError(key) from None
        return _principal(claims, via)
    assert error is not None
    raise error


def _principal(claims: Mapping[str, Any], via: Via) -> WSPrincipal:
    sub = claims.get("sub")
    if not isinstance(sub, str | int) or isinstance(sub, bool) or sub == "":
        raise WSAuthError("claims")
    email = claims.get("email")
    return WSPrincipal(
        id=str(sub),
        email=email if isinstance(email, str) else None,
        scopes=parse_scopes(claims),
        claims=dict(claims),
        via=via,
    )


def parse_scopes(claims: Mapping[str, Any]) -> frozenset[str]:
    """Scopes from a ``scopes`` list, or a space-separated ``scope``/``scopes`` string."""
    found: set[str] = set()
    for name in ("scopes", "scope", "scp"):
        value = claims.get(name)
        if isinstance(value, str):
            found.update(value.split())
        elif isinstance(value, list | tuple):
            found.update(str(v) for v in value if isinstance(v, str) and v)
    return frozenset(found)


# --- finding credentials in the scope ---------------------------------------------------


def _headers(scope: Mapping[str, Any]) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or ()}


def _query(scope: Mapping[str, Any]) -> dict[str, list[str]]:
    raw = scope.get("query_string") or b""
    return parse_qs(raw.decode("latin-1"), keep_blank_values=True)


def find_credential(scope: Mapping[str, Any], *, api_keys: bool = False) -> Credential | None:
    """The credential of a handshake, or None. See the module docstring for the order.

    With ``api_keys``, an ``X-API-Key`` header or ``api_key`` query parameter counts
    too, after the JWT places.
    """
    headers = _headers(scope)
    authorization = headers.get("authorization", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return Credential("jwt", value.strip(), "header")
    offered = list(scope.get("subprotocols") or ())
    if "bearer" in offered:
        index = offered.index("bearer")
        if index + 1 < len(offered) and offered[index + 1]:
            return Credential("jwt", offered[index + 1], "subprotocol")
    query = _query(scope)
    tokens = query.get("token")
    if tokens and tokens[0]:
        return Credential("jwt", tokens[0], "query")
    if api_keys:
        key = headers.get("x-api-key") or (query.get("api_key") or [""])[0]
        if key:
            return Credential("api_key", key, "api_key")
    return None


# --- API keys ----------------------------------------------------------------------------

ApiKeyVerifier = Callable[[str], "Awaitable[WSPrincipal | None] | WSPrincipal | None"]
_api_key_verifier: ApiKeyVerifier | None = None


def register_api_key_verifier(verifier: ApiKeyVerifier | None) -> None:
    """Register how API keys are checked: ``verifier(key) -> WSPrincipal | None``.

    It may be sync or async, and returns None for an unknown key. Without one,
    protected routes accept JWTs only. Pass None to unregister.
    """
    global _api_key_verifier
    _api_key_verifier = verifier


def api_keys_enabled() -> bool:
    return _api_key_verifier is not None


async def _verify_api_key(key: str) -> WSPrincipal:
    if _api_key_verifier is None:
        raise WSAuthError("api_key")
    result = _api_key_verifier(key)
    if inspect.isawaitable(result):
        result = await result
    if not isinstance(result, WSPrincipal):
        raise WSAuthError("api_key")
    if result.via != "api_key":
        result = WSPrincipal(result.id, result.email, result.scopes, result.claims, "api_key")
    return result


# --- origins -----------------------------------------------------------------------------


def allowed_origins(environ: Mapping[str, str] | None = None) -> frozenset[str] | None:
    """``WS_ALLOWED_ORIGINS`` as a set of origins, or None when unset (no check)."""
    env = os.environ if environ is None else environ
    raw = env.get("WS_ALLOWED_ORIGINS")
    if raw is None or not raw.strip():
        return None
    return frozenset(o.strip().rstrip("/").lower() for o in raw.split(",") if o.strip())


def check_origin(scope: Mapping[str, Any], allowed: Iterable[str] | None) -> None:
    """Refuse a browser handshake from an origin not in ``allowed``.

    ``allowed`` None means no check. A handshake without an ``Origin`` header
    (not a browser) passes: cross-site WebSocket hijacking needs a browser.
    ``*`` allows any origin; entries with ``*`` are globs (``http://127.0.0.1:*``).

    Raises:
        WSAuthError: With reason ``origin not allowed``.
    """
    if allowed is None:
        return
    origins = set(allowed)
    origin = _headers(scope).get("origin")
    if origin is None or "*" in origins:
        return
    origin = origin.rstrip("/").lower()
    if origin in origins:
        return
    # Entries may be globs: "http://127.0.0.1:*", "https://*.example.com".
    if not any("*" in o and fnmatch.fnmatchcase(origin, o) for o in origins):
        raise WSAuthError("origin")


# --- all together ------------------------------------------------------------------------


async def authenticate(
    scope: Mapping[str, Any],
    *,
    required: bool = True,
    api_keys: bool = False,
    settings: JWTSettings | None = None,
) -> WSPrincipal | None:
    """Check the origin and the credential of a WebSocket handshake.

    Args:
        scope: The ASGI scope.
        required: Whether a missing credential is an error (else None is returned).
            A credential that is present but invalid is always an error.
        api_keys: Whether an API key is accepted (when a verifier is registered).
        settings: Defaults to :meth:`JWTSettings.load`.

    Raises:
        WSAuthError: If the handshake is refused.
    """
    check_origin(scope, allowed_origins())
    credential = find_credential(scope, api_keys=api_keys and api_keys_enabled())
    if credential is None:
        if required:
            raise WSAuthError("missing")
        return None
    if credential.kind == "api_key":
        return await _verify_api_key(credential.value)
    return verify_token(credential.value, settings or JWTSettings.load(), credential.via)
