"""WebSocket auth for FastAPI: the negative matrix and the positive cases, in-process.

Starlette's TestClient shows the close code and reason that a real server turns
into HTTP 403; ``test_fastapi_auth_e2e.py`` checks the same against uvicorn.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from svc_infra.api.fastapi.dx import RequireWSScopes, WSIdentity
from tests.tokens import (
    OLD_SECRET,
    SECRET,
    hs256_signed_with_public_key,
    rsa_keys,
    token,
    unsigned_token,
)

AUTH_VARS = (
    "AUTH_JWT__SECRET",
    "AUTH_JWT__OLD_SECRETS",
    "AUTH_JWT__ALGORITHMS",
    "AUTH_JWT__PUBLIC_KEY",
    "AUTH_JWT__AUDIENCE",
    "AUTH_JWT__ISSUER",
    "AUTH_JWT__LEEWAY",
    "WS_ALLOWED_ORIGINS",
)


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for var in AUTH_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AUTH_JWT__SECRET", SECRET)
    return monkeypatch


@pytest.fixture
def client() -> Iterator[TestClient]:
    module = importlib.reload(importlib.import_module("tests.apps.auth_app"))
    with TestClient(module.app) as test_client:
        test_client.manager = module.manager  # type: ignore[attr-defined]
        yield test_client


def bearer(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


def refused(client: TestClient, path: str, **kwargs: Any) -> tuple[int, str]:
    """Connect and expect a close before accept; return its code and reason."""
    with pytest.raises(WebSocketDisconnect) as info:
        with client.websocket_connect(path, **kwargs) as ws:
            ws.receive_json()
    return info.value.code, info.value.reason


def accepted(client: TestClient, path: str, **kwargs: Any) -> dict[str, Any]:
    with client.websocket_connect(path, **kwargs) as ws:
        data: dict[str, Any] = ws.receive_json()
        return data


# --- the negative matrix ------------------------------------------------------------------

NEGATIVE = [
    ("missing", {}, "missing credentials"),
    ("malformed", {"headers": bearer("not-a-jwt")}, "malformed token"),
    ("garbage segments", {"headers": bearer("a.b.c")}, "malformed token"),
    ("expired", {"headers": bearer(token(exp=-60))}, "token expired"),
    ("nbf in the future", {"headers": bearer(token(nbf=9_999_999_999))}, "token not yet valid"),
    (
        "wrong signature",
        {"headers": bearer(token(key="another-secret-entirely-0123456789abcdef"))},
        "invalid signature",
    ),
    ("alg none", {"headers": bearer(unsigned_token())}, "algorithm not allowed"),
    ("no exp", {"headers": bearer(token(exp=None))}, "missing required claim"),
    ("no sub", {"headers": bearer(token(sub=None))}, "missing required claim"),
    ("64 KB token", {"headers": bearer(token(blob="x" * 65536))}, "token too large"),
    ("bad token in query", {"params": None, "path": "?token=nope"}, "malformed token"),
    ("bad token in subprotocol", {"subprotocols": ["bearer", "nope"]}, "malformed token"),
]


@pytest.mark.parametrize(("case", "kwargs", "reason"), NEGATIVE, ids=[c[0] for c in NEGATIVE])
@pytest.mark.parametrize("route", ["/user/ws", "/protected/ws", "/scoped/ws"])
def test_refused_before_accept(
    client: TestClient, route: str, case: str, kwargs: dict[str, Any], reason: str
) -> None:
    """Each bad credential is refused with 1008 and its documented reason."""
    kwargs = dict(kwargs)
    path = route + kwargs.pop("path", "")
    kwargs.pop("params", None)
    assert refused(client, path, **kwargs) == (1008, reason)
    assert client.manager.connection_count == 0  # type: ignore[attr-defined]


def test_algorithm_confusion_is_refused(client: TestClient, env: pytest.MonkeyPatch) -> None:
    """An HS256 token 'signed' with the RS256 public key never verifies."""
    env.setenv("AUTH_JWT__ALGORITHMS", "RS256")
    env.setenv("AUTH_JWT__PUBLIC_KEY", rsa_keys()[1])
    attack = hs256_signed_with_public_key()
    assert refused(client, "/user/ws", headers=bearer(attack)) == (1008, "algorithm not allowed")
    # Both families allowed: the HMAC secret checks HS256, never the public key.
    env.setenv("AUTH_JWT__ALGORITHMS", "RS256,HS256")
    assert refused(client, "/user/ws", headers=bearer(attack)) == (1008, "invalid signature")
    good = token(key=rsa_keys()[0], algorithm="RS256")
    assert accepted(client, "/user/ws", headers=bearer(good))["id"] == "alice"


def test_audience_and_issuer_when_set(client: TestClient, env: pytest.MonkeyPatch) -> None:
    """With AUTH_JWT__AUDIENCE / __ISSUER set, other values are refused."""
    env.setenv("AUTH_JWT__AUDIENCE", "ws-api")
    env.setenv("AUTH_JWT__ISSUER", "https://auth.example")
    good = token(aud="ws-api", iss="https://auth.example")
    assert accepted(client, "/user/ws", headers=bearer(good))["id"] == "alice"
    wrong_aud = token(aud="other", iss="https://auth.example")
    wrong_iss = token(aud="ws-api", iss="https://evil.example")
    assert refused(client, "/user/ws", headers=bearer(wrong_aud)) == (1008, "invalid audience")
    assert refused(client, "/user/ws", headers=bearer(wrong_iss)) == (1008, "invalid issuer")


def test_string_scopes_are_split_on_spaces(client: TestClient) -> None:
    """A scope string 'ab' is one scope, not 'a' and 'b'."""
    assert refused(client, "/scoped/ws", headers=bearer(token(scope="ab"))) == (
        1008,
        "insufficient scope",
    )
    got = accepted(client, "/scoped/ws", headers=bearer(token(scope="b a")))
    assert got["scopes"] == ["a", "b"]


def test_all_and_any_scope_guards(client: TestClient) -> None:
    """RequireWSScopes needs all; RequireWSAnyScope needs one."""
    only_a = bearer(token(scopes=["a"]))
    both = bearer(token(scopes=["a", "b"]))
    neither = bearer(token(scopes=["c"]))
    assert refused(client, "/all-of-ab", headers=only_a) == (1008, "insufficient scope")
    assert accepted(client, "/all-of-ab", headers=both)["scopes"] == ["a", "b"]
    assert accepted(client, "/any-of-ab", headers=only_a)["scopes"] == ["a"]
    assert refused(client, "/any-of-ab", headers=neither) == (1008, "insufficient scope")


def test_foreign_origin(client: TestClient, env: pytest.MonkeyPatch) -> None:
    """With WS_ALLOWED_ORIGINS, a foreign Origin is refused on every router, public too."""
    env.setenv("WS_ALLOWED_ORIGINS", "https://app.example, http://127.0.0.1:8000")
    good = {**bearer(token()), "Origin": "https://app.example"}
    evil = {**bearer(token()), "Origin": "https://evil.example"}
    assert accepted(client, "/user/ws", headers=good)["id"] == "alice"
    assert refused(client, "/user/ws", headers=evil) == (1008, "origin not allowed")
    assert refused(client, "/public/ws", headers=evil) == (1008, "origin not allowed")
    assert accepted(client, "/public/ws", headers={"Origin": "http://127.0.0.1:8000"}) == {
        "public": True
    }
    # No Origin header: not a browser, nothing to hijack.
    assert accepted(client, "/user/ws", headers=bearer(token()))["id"] == "alice"


def test_no_secret_configured_refuses_and_logs_once(
    client: TestClient, env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, settings: Any
) -> None:
    """Without AUTH_JWT__SECRET every token is refused; the log names the variable."""
    import svc_infra.websocket.auth.core as core

    env.delenv("AUTH_JWT__SECRET")
    settings.AUTH_JWT = {}  # the demo project's settings carry a development secret
    env.setattr(core, "_warned_unconfigured", False)
    for _ in range(3):
        assert refused(client, "/user/ws", headers=bearer(token())) == (
            1008,
            "authentication not configured",
        )
    errors = [r for r in caplog.records if "AUTH_JWT__SECRET" in r.getMessage()]
    assert len(errors) == 1


# --- positive cases -------------------------------------------------------------------


def test_principal_fields_and_each_token_place(client: TestClient) -> None:
    """The token works from the header, the subprotocol and the query; fields are filled."""
    tok = token("42", email="a@example.com", scope="read write")
    by_header = accepted(client, "/user/ws", headers=bearer(tok))
    assert by_header == {
        "id": "42",
        "email": "a@example.com",
        "scopes": ["read", "write"],
        "via": "header",
    }
    assert accepted(client, "/user/ws", subprotocols=["bearer", tok])["via"] == "subprotocol"
    assert accepted(client, f"/user/ws?token={tok}")["via"] == "query"


def test_bearer_subprotocol_is_echoed(client: TestClient) -> None:
    """A token sent as a subprotocol is accepted with 'bearer', as browsers require."""
    with client.websocket_connect("/user/ws", subprotocols=["bearer", token()]) as ws:
        assert ws.accepted_subprotocol == "bearer"
        ws.send_text("ping")
        ws.receive_json()
        assert ws.receive_text() == "ping"
    with client.websocket_connect("/optional/ws", subprotocols=["bearer", token()]) as ws:
        assert ws.accepted_subprotocol == "bearer"


def test_header_wins_over_subprotocol_and_query(client: TestClient) -> None:
    """With several credentials, the documented order decides: header first."""
    got = accepted(
        client,
        f"/user/ws?token={token('from-query')}",
        headers=bearer(token("from-header")),
        subprotocols=["bearer", token("from-subprotocol")],
    )
    assert (got["id"], got["via"]) == ("from-header", "header")


def test_old_secret_after_rotation(client: TestClient, env: pytest.MonkeyPatch) -> None:
    """Tokens signed with a secret listed in AUTH_JWT__OLD_SECRETS still verify."""
    old = token(key=OLD_SECRET)
    assert refused(client, "/user/ws", headers=bearer(old)) == (1008, "invalid signature")
    env.setenv("AUTH_JWT__OLD_SECRETS", f"unused-secret-00000000000000000000000000, {OLD_SECRET}")
    assert accepted(client, "/user/ws", headers=bearer(old))["id"] == "alice"


def test_api_key_on_protected_not_on_user_routes(client: TestClient) -> None:
    """A registered API key opens protected routes only; a bad key is refused."""
    got = accepted(client, "/protected/ws", headers={"X-API-Key": "good-key"})
    assert (got["id"], got["via"]) == ("service-1", "api_key")
    assert accepted(client, "/protected/ws?api_key=good-key")["id"] == "service-1"
    assert refused(client, "/protected/ws", headers={"X-API-Key": "bad"}) == (
        1008,
        "invalid API key",
    )
    assert refused(client, "/user/ws", headers={"X-API-Key": "good-key"}) == (
        1008,
        "missing credentials",
    )


def test_optional_identity(client: TestClient) -> None:
    """No credential gives None; a valid one a principal; an invalid one is refused."""
    assert accepted(client, "/optional/ws") == {"id": None}
    assert accepted(client, "/optional/ws", headers=bearer(token()))["id"] == "alice"
    assert refused(client, "/optional/ws", headers=bearer(token(exp=-5))) == (
        1008,
        "token expired",
    )


def test_trailing_slash_twin_routes(client: TestClient) -> None:
    """DualAPIRouter serves /user/ws and /user/ws/ alike."""
    assert accepted(client, "/user/ws/", headers=bearer(token()))["id"] == "alice"


def test_server_keeps_serving_and_manager_saw_nothing(client: TestClient) -> None:
    """After a burst of refusals the manager has no trace of them, and serves a good client."""
    for _, kwargs, _ in NEGATIVE:
        kwargs = {k: v for k, v in kwargs.items() if k not in ("params", "path")}
        refused(client, "/user/ws", **kwargs)
    manager = client.manager  # type: ignore[attr-defined]
    assert manager.connection_count == 0
    assert manager.stats.as_dict() == dict.fromkeys(manager.stats.as_dict(), 0)
    with client.websocket_connect("/user/ws", headers=bearer(token())) as ws:
        assert ws.receive_json()["id"] == "alice"
        assert manager.connection_count == 1


def test_http_routes_get_401_or_403(env: pytest.MonkeyPatch) -> None:
    """On an HTTP route: 401 for a missing or invalid credential, 403 for a missing scope."""
    app = FastAPI()

    @app.get("/me", dependencies=[RequireWSScopes("a")])
    async def me(user: WSIdentity) -> str:
        return user.id

    with TestClient(app) as http:
        assert http.get("/me").status_code == 401
        assert http.get("/me", headers=bearer("garbage")).status_code == 401
        assert http.get("/me", headers=bearer(token(scope="b"))).status_code == 403
        assert http.get("/me", headers=bearer(token(scope="a"))).json() == "alice"


def test_origin_globs(client: TestClient, env: pytest.MonkeyPatch) -> None:
    """WS_ALLOWED_ORIGINS entries may be globs (any port, any subdomain)."""
    env.setenv("WS_ALLOWED_ORIGINS", "http://127.0.0.1:*,https://*.example.com")
    for good in ("http://127.0.0.1:8000", "https://app.example.com"):
        assert accepted(client, "/public/ws", headers={"Origin": good}) == {"public": True}
    for bad in ("http://127.0.0.2:8000", "https://example.com.evil.net", "http://app.example.com"):
        assert refused(client, "/public/ws", headers={"Origin": bad}) == (
            1008,
            "origin not allowed",
        )
