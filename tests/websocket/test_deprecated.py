"""Old import paths: each answers for its names with a DeprecationWarning naming the home."""

from __future__ import annotations

import importlib

import pytest

MOVED = [
    ("svc_infra.websocket.layers", "svc_infra.websocket.scaleout.layers", "redis_host"),
    ("svc_infra.websocket.layers", "svc_infra.websocket.scaleout.layers", "build_layer"),
    (
        "svc_infra.websocket.integrations.channels",
        "svc_infra.websocket.djangoapp.consumers",
        "ManagedJsonWebsocketConsumer",
    ),
    (
        "svc_infra.websocket.auth.channels",
        "svc_infra.websocket.djangoapp.auth",
        "JWTAuthMiddlewareStack",
    ),
    ("svc_infra.api.fastapi.dual", "svc_infra.api.fastapi.dx", "WSIdentity"),
    ("svc_infra.api.fastapi.dual", "svc_infra.api.fastapi.dx", "RequireWSScopes"),
]


@pytest.mark.parametrize(("old", "new", "name"), MOVED)
def test_old_path_warns_and_gives_the_same_object(old: str, new: str, name: str) -> None:
    module = importlib.import_module(old)
    with pytest.warns(DeprecationWarning, match=rf"{old}\.{name} moved: import it from {new}"):
        value = getattr(module, name)
    assert value is getattr(importlib.import_module(new), name)


@pytest.mark.parametrize("old", sorted({old for old, _, _ in MOVED}))
def test_old_path_refuses_other_names(old: str) -> None:
    module = importlib.import_module(old)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        module.nope  # noqa: B018


def test_deprecated_modules_export_nothing() -> None:
    """``from old import *`` must not warn or pull names: new code uses the homes."""
    for old in {old for old, _, _ in MOVED} - {"svc_infra.api.fastapi.dual"}:
        assert importlib.import_module(old).__all__ == []
