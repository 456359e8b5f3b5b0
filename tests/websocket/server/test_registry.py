"""The registry: pure state of connections, users and rooms."""

from __future__ import annotations

from svc_infra.websocket.models import ConnectionInfo
from svc_infra.websocket.server._registry import Registry
from svc_infra.websocket.server.connection import LocalConnection
from svc_infra.websocket.testing import MemoryTransport


def conn(user: str, cid: str) -> LocalConnection:
    socket = MemoryTransport()
    return LocalConnection(
        ConnectionInfo(user, cid), socket, socket, limit=1000, failed=lambda c, e: None
    )


def test_add_reports_a_users_first_connection_and_remove_forgets_it() -> None:
    """The first connection of a user is reported; removing twice is harmless."""
    reg = Registry()
    a1, a2 = conn("a", "1"), conn("a", "2")
    assert reg.add(a1) is True
    assert reg.add(a2) is False
    assert reg.by_socket(a1.socket) is a1
    assert reg.remove(a1) is True
    assert reg.remove(a1) is False
    assert reg.user_connections("a") == [a2]
    assert reg.remove(a2) is True
    assert "a" not in reg.users and reg.by_socket(a2.socket) is None


def test_targets_select_by_user_room_and_exclusion() -> None:
    """Fan-out targets: a user's connections, a room's connected members, everyone."""
    reg = Registry()
    a, b, c = conn("a", "1"), conn("b", "2"), conn("c", "3")
    for x in (a, b, c):
        reg.add(x)
    reg.set_member("a", "r", True)
    reg.set_member("b", "r", True)
    reg.set_member("z", "r", True)  # a member with no connection here
    assert list(reg.targets(user="a")) == [a]
    assert list(reg.targets(user="a", exclude="a")) == []
    assert list(reg.targets(room="r")) == [a, b]
    assert list(reg.targets(room="r", exclude="b")) == [a]
    assert list(reg.targets()) == [a, b, c]
    assert list(reg.targets(exclude="c")) == [a, b]
    assert reg.wanted_here("r") and not reg.wanted_here("nowhere")


def test_a_room_set_applies_only_if_newer_and_reports_what_changed() -> None:
    """Versioned room sets: older versions are ignored; the changed rooms are returned."""
    reg = Registry()
    assert reg.replace_rooms("u", ["x", "y"], 2) == ["x", "y"]
    assert reg.replace_rooms("u", ["z"], 1) == []  # older
    assert reg.replace_rooms("u", ["x"], 3) == ["y"]
    assert reg.rooms_of("u") == ["x"] and reg.members("x") == ["u"]
    assert reg.replace_rooms("u", [], 4) == ["x"]
    assert reg.rooms_of("u") == [] and reg.rooms == {}
    # The emptied set keeps its version (a tombstone) against late, older updates.
    assert reg.replace_rooms("u", ["x"], 3) == []
