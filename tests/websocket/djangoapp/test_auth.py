"""WebSocket auth for Django Channels: the negative matrix, with WebsocketCommunicator."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator

from svc_infra.websocket.auth import WSPrincipal, register_api_key_verifier
from tests.apps.channels_auth import application, with_api_keys
from tests.support import timeout
from tests.tokens import (
    OLD_SECRET,
    SECRET,
    hs256_signed_with_public_key,
    rsa_keys,
    token,
    unsigned_token,
)


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for var in (
        "AUTH_JWT__OLD_SECRETS",
        "AUTH_JWT__ALGORITHMS",
        "AUTH_JWT__PUBLIC_KEY",
        "AUTH_JWT__AUDIENCE",
        "AUTH_JWT__ISSUER",
        "WS_ALLOWED_ORIGINS",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AUTH_JWT__SECRET", SECRET)
    return monkeypatch


def headers(tok: str | None = None, **extra: str) -> list[tuple[bytes, bytes]]:
    result = [(k.lower().encode(), v.encode()) for k, v in extra.items()]
    if tok is not None:
        result.append((b"authorization", f"Bearer {tok}".encode()))
    return result


async def attempt(
    path: str,
    *,
    app: Any = application,
    hdrs: list[tuple[bytes, bytes]] | None = None,
    subprotocols: list[str] | None = None,
) -> tuple[bool, Any, dict[str, Any] | None]:
    """Connect; return (accepted, close code or subprotocol, first JSON message)."""
    communicator = WebsocketCommunicator(app, path, headers=hdrs or [], subprotocols=subprotocols)
    connected, detail = await communicator.connect(timeout=timeout(5))
    message = None
    if connected:
        message = await communicator.receive_json_from(timeout=timeout(5))
        await communicator.disconnect()
    return connected, detail, message


NEGATIVE = [
    ("missing", None),
    ("malformed", "not-a-jwt"),
    ("expired", token(exp=-60)),
    ("nbf in the future", token(nbf=9_999_999_999)),
    ("wrong signature", token(key="another-secret-entirely-0123456789abcdef")),
    ("alg none", unsigned_token()),
    ("no exp", token(exp=None)),
    ("64 KB token", token(blob="x" * 65536)),
]


@pytest.mark.parametrize(("case", "tok"), NEGATIVE, ids=[c for c, _ in NEGATIVE])
@pytest.mark.parametrize("place", ["header", "subprotocol", "query"])
async def test_refused_before_accept(case: str, tok: str | None, place: str) -> None:
    """Each bad credential, wherever it comes from, closes with 1008 before accept."""
    if tok is None:
        connected, code, _ = await attempt("/secure/")
    elif place == "header":
        connected, code, _ = await attempt("/secure/", hdrs=headers(tok))
    elif place == "subprotocol":
        connected, code, _ = await attempt("/secure/", subprotocols=["bearer", tok])
    else:
        connected, code, _ = await attempt(f"/secure/?token={tok}")
    assert (connected, code) == (False, 1008)


async def test_algorithm_confusion(env: pytest.MonkeyPatch) -> None:
    """HS256 signed with the RS256 public key is refused; RS256 itself works."""
    env.setenv("AUTH_JWT__ALGORITHMS", "RS256")
    env.setenv("AUTH_JWT__PUBLIC_KEY", rsa_keys()[1])
    assert (await attempt("/secure/", hdrs=headers(hs256_signed_with_public_key())))[:2] == (
        False,
        1008,
    )
    good = token(key=rsa_keys()[0], algorithm="RS256")
    connected, _, message = await attempt("/secure/", hdrs=headers(good))
    assert connected and message is not None and message["id"] == "alice"


async def test_audience_and_issuer(env: pytest.MonkeyPatch) -> None:
    """Wrong audience or issuer is refused when they are set."""
    env.setenv("AUTH_JWT__AUDIENCE", "ws-api")
    env.setenv("AUTH_JWT__ISSUER", "https://auth.example")
    ok = token(aud="ws-api", iss="https://auth.example")
    assert (await attempt("/secure/", hdrs=headers(ok)))[0]
    for bad in (token(aud="x", iss="https://auth.example"), token(aud="ws-api", iss="x")):
        assert (await attempt("/secure/", hdrs=headers(bad)))[:2] == (False, 1008)


async def test_scopes_all_any_and_strings() -> None:
    """required_scopes needs all, any_scopes one; 'ab' is not 'a'."""
    assert (await attempt("/all/", hdrs=headers(token(scope="a"))))[:2] == (False, 1008)
    assert (await attempt("/all/", hdrs=headers(token(scope="a b"))))[0]
    assert (await attempt("/any/", hdrs=headers(token(scope="b"))))[0]
    assert (await attempt("/any/", hdrs=headers(token(scope="ab"))))[:2] == (False, 1008)


async def test_foreign_origin(env: pytest.MonkeyPatch) -> None:
    """With WS_ALLOWED_ORIGINS, a foreign Origin is refused, even on open routes."""
    env.setenv("WS_ALLOWED_ORIGINS", "https://app.example")
    evil = headers(token(), origin="https://evil.example")
    assert (await attempt("/secure/", hdrs=evil))[:2] == (False, 1008)
    assert (await attempt("/open/", hdrs=headers(origin="https://evil.example")))[:2] == (
        False,
        1008,
    )
    assert (await attempt("/secure/", hdrs=headers(token(), origin="https://app.example")))[0]


async def test_principal_user_and_bearer_subprotocol() -> None:
    """scope['principal'] and scope['user'] are set; 'bearer' can be echoed."""
    tok = token("42", email="a@example.com", scopes=["x", "y"])
    connected, subprotocol, message = await attempt("/secure/", subprotocols=["bearer", tok])
    assert connected
    assert subprotocol == "bearer"
    assert message == {
        "id": "42",
        "email": "a@example.com",
        "scopes": ["x", "y"],
        "via": "subprotocol",
        "user": "42",
        "authenticated": True,
    }
    connected, _, message = await attempt("/open/")
    assert connected and message == {"authenticated": False}


async def test_old_secret_after_rotation(env: pytest.MonkeyPatch) -> None:
    """A token signed with an old secret verifies once the old secret is listed."""
    old = token(key=OLD_SECRET)
    assert (await attempt("/secure/", hdrs=headers(old)))[:2] == (False, 1008)
    env.setenv("AUTH_JWT__OLD_SECRETS", OLD_SECRET)
    assert (await attempt("/secure/", hdrs=headers(old)))[0]


async def test_django_settings_supply_the_secret(env: pytest.MonkeyPatch, settings: Any) -> None:
    """settings.AUTH_JWT works when the environment has no AUTH_JWT__SECRET."""
    env.delenv("AUTH_JWT__SECRET")
    settings.AUTH_JWT = {"SECRET": "django-settings-secret-0123456789abcdef"}
    tok = token(key="django-settings-secret-0123456789abcdef")
    assert (await attempt("/secure/", hdrs=headers(tok)))[0]


@pytest.fixture
def api_key_verifier() -> Iterator[None]:
    async def verify(key: str) -> WSPrincipal | None:
        return WSPrincipal("svc", scopes=frozenset({"a"})) if key == "k-1" else None

    register_api_key_verifier(verify)
    yield None
    register_api_key_verifier(None)


@pytest.mark.usefixtures("api_key_verifier")
async def test_api_keys_only_where_enabled() -> None:
    """An async verifier's key works on the api_keys stack, not on the JWT-only one."""
    key = headers(**{"x-api-key": "k-1"})
    connected, _, message = await attempt("/secure/", app=with_api_keys, hdrs=key)
    assert connected and message is not None and message["via"] == "api_key"
    assert (await attempt("/secure/", app=application, hdrs=key))[:2] == (False, 1008)
    bad = headers(**{"x-api-key": "nope"})
    assert (await attempt("/secure/", app=with_api_keys, hdrs=bad))[:2] == (False, 1008)
