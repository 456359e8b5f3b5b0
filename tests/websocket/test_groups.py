"""Tests of the group naming scheme."""

from __future__ import annotations

import pytest
from channels.layers import InMemoryChannelLayer

from svc_infra.websocket.exceptions import ConfigurationError
from svc_infra.websocket.groups import (
    MAX_GROUP_NAME_LENGTH,
    broadcast_group,
    normalize_prefix,
    room_group,
    user_group,
)

LAYER = InMemoryChannelLayer()

NAMES = [
    "alice",
    "user-42",
    "a.b_c",
    "Ünïcödé",
    "with space",
    "emoji 🎉",
    "colon:name",
    "x" * 200,
    "",
    "h.abc",
]


@pytest.mark.parametrize("name", NAMES)
def test_every_name_maps_to_a_valid_group(name: str) -> None:
    """Any user id or room name gives a group name Channels accepts."""
    for group in (user_group(name), room_group(name), user_group(name, "app.ws.")):
        assert LAYER.require_valid_group_name(group)
        assert len(group) <= MAX_GROUP_NAME_LENGTH


def test_plain_names_stay_readable() -> None:
    """Valid short names are kept as they are, for debuggable Redis keys."""
    assert user_group("alice") == "ws.u.alice"
    assert room_group("general") == "ws.r.general"
    assert broadcast_group() == "ws.all"
    assert broadcast_group("app.") == "app.all"


def test_no_collisions() -> None:
    """Distinct ids give distinct groups, users and rooms never share, hashes never clash."""
    groups = [user_group(n) for n in NAMES] + [room_group(n) for n in NAMES]
    groups.append(broadcast_group())
    # A plain id that looks like a hashed one still differs from it.
    groups.append(user_group("h." + user_group("with space").split(".")[-1]))
    assert len(groups) == len(set(groups))


def test_prefix_normalization() -> None:
    """Characters Channels refuses become '.'; empty or long prefixes are errors."""
    assert normalize_prefix("ws:") == "ws."
    assert normalize_prefix("my app/ws") == "my.app.ws"
    with pytest.raises(ConfigurationError, match="channel_prefix"):
        normalize_prefix("")
    with pytest.raises(ConfigurationError, match="channel_prefix"):
        normalize_prefix("p" * 41)
