"""Unit tests of ConnectionManager with in-memory sockets and an in-memory layer."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from channels.layers import InMemoryChannelLayer

from svc_infra.websocket import (
    CLOSE_SLOW_CONSUMER,
    ConnectionInfo,
    ConnectionManager,
    WebSocketConfig,
)
from svc_infra.websocket.groups import room_group, user_group
from svc_infra.websocket.testing import MemoryTransport
from tests.support import timeout, wait_until

CONFIG = WebSocketConfig(close_timeout=timeout(2))


@pytest.fixture
async def manager() -> AsyncIterator[ConnectionManager]:
    mgr = ConnectionManager(InMemoryChannelLayer(), config=CONFIG)
    yield mgr
    await mgr.shutdown()


def sock(*subprotocols: str) -> MemoryTransport:
    return MemoryTransport(subprotocols, timeout=timeout(5))


async def settle(*managers: ConnectionManager) -> None:
    """Wait until every manager has consumed what the layer holds for it."""
    async with asyncio.timeout(timeout(5)):
        for mgr in managers:
            assert mgr.ops.channel_name is not None
            queue = mgr.ops.layer.channels.get(mgr.ops.channel_name)
            while queue is not None and not queue.empty():
                await asyncio.sleep(0)
        # One more turn for handlers that were mid-dispatch.
        for _ in range(5):
            await asyncio.sleep(0)


# --- connections and stats -------------------------------------------------------------


async def test_connect_accepts_and_tracks(manager: ConnectionManager) -> None:
    """connect() accepts the socket, returns an id, and the stats reflect it."""
    ws = sock()
    conn_id = await manager.connect("alice", ws, {"device": "phone"})
    assert ws.accepted
    assert ws.accepted_subprotocol is None
    assert isinstance(conn_id, str) and conn_id
    assert manager.active_users == ["alice"]
    assert manager.connection_count == 1
    assert manager.is_user_connected("alice")
    assert not manager.is_user_connected("bob")
    [info] = manager.get_user_connections("alice")
    assert isinstance(info, ConnectionInfo)
    assert (info.user_id, info.connection_id, info.metadata) == (
        "alice",
        conn_id,
        {"device": "phone"},
    )


async def test_many_connections_per_user(manager: ConnectionManager) -> None:
    """A user may hold several connections; each gets the user's messages."""
    a1, a2, b = sock(), sock(), sock()
    id1 = await manager.connect("alice", a1)
    id2 = await manager.connect("alice", a2, metadata={"tab": 2})
    await manager.connect("bob", b)
    assert id1 != id2
    assert manager.connection_count == 3
    assert sorted(manager.active_users) == ["alice", "bob"]
    assert [c.connection_id for c in manager.get_user_connections("alice")] == [id1, id2]
    await manager.send_to_user("alice", {"n": 1})
    assert await a1.next_json() == {"n": 1}
    assert await a2.next_json() == {"n": 1}
    assert b.unread() == []


async def test_connecting_the_same_socket_twice_is_one_connection(
    manager: ConnectionManager,
) -> None:
    """Registering a socket again returns its existing id."""
    ws = sock()
    first = await manager.connect("alice", ws)
    assert await manager.connect("alice", ws) == first
    assert manager.connection_count == 1


async def test_bearer_subprotocol_is_selected(manager: ConnectionManager) -> None:
    """A client offering ['bearer', token] is accepted with 'bearer', as browsers need."""
    ws = sock("bearer", "eyJ.token")
    await manager.connect("alice", ws)
    assert ws.accepted_subprotocol == "bearer"


async def test_already_accepted_socket_is_not_accepted_again(manager: ConnectionManager) -> None:
    """If the route accepted the socket, connect() leaves it as it is."""
    ws = sock()
    await ws.accept("chat")
    await manager.connect("alice", ws)
    assert ws.accepted_subprotocol == "chat"


async def test_int_user_ids_are_strings(manager: ConnectionManager) -> None:
    """An int id is the same user as its string."""
    ws = sock()
    await manager.connect(42, ws)  # type: ignore[arg-type]
    assert manager.active_users == ["42"]
    await manager.send_to_user("42", "hi")
    assert await ws.next() == "hi"
    with pytest.raises(TypeError, match="user_id"):
        await manager.connect(4.2, sock())  # type: ignore[arg-type]


async def test_unsupported_socket_type(manager: ConnectionManager) -> None:
    """An object that is no WebSocket is refused with a clear TypeError."""
    with pytest.raises(TypeError, match="unsupported websocket type"):
        await manager.connect("alice", object())
    with pytest.raises(TypeError, match="metadata"):
        await manager.connect("alice", sock(), metadata=["x"])  # type: ignore[arg-type]
    assert manager.connection_count == 0


# --- messages --------------------------------------------------------------------------


async def test_payload_types(manager: ConnectionManager) -> None:
    """dict/list go as JSON text, str as text, bytes as binary."""
    ws = sock()
    await manager.connect("alice", ws)
    await manager.send_to_user("alice", {"a": [1, 2.5, None, True], "é": "ü"})
    await manager.send_to_user("alice", [1, "two"])
    await manager.send_to_user("alice", "plain text")
    await manager.send_to_user("alice", b"\x00\x01")
    assert await ws.next() == '{"a":[1,2.5,null,true],"é":"ü"}'
    assert await ws.next() == '[1,"two"]'
    assert await ws.next() == "plain text"
    assert await ws.next() == b"\x00\x01"


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        ({1, 2}, "set"),
        ({"a": {1, 2}}, "set"),
        ({1: "int key"}, "key of type int"),
        ({"nested": [{2: "x"}]}, "key of type int"),
        (object(), "object"),
        ({"a": object()}, "object"),
        ({"x": float("nan")}, "nan"),
        (12, "int"),
        (None, "NoneType"),
    ],
)
async def test_bad_payloads_raise_type_error(
    manager: ConnectionManager, payload: Any, needle: str
) -> None:
    """What the layer cannot carry raises TypeError at the call; nothing is sent."""
    ws = sock()
    await manager.connect("alice", ws)
    for call in (
        manager.send_to_user("alice", payload),
        manager.broadcast(payload),
        manager.broadcast_to_room("r", payload),
    ):
        with pytest.raises(TypeError, match=needle):
            await call
    assert ws.sent == []
    await manager.send_to_user("alice", "still works")
    assert await ws.next() == "still works"


async def test_broadcast_and_exclude(manager: ConnectionManager) -> None:
    """broadcast reaches everyone; exclude_user skips all of that user's connections."""
    a1, a2, b, c = sock(), sock(), sock(), sock()
    await manager.connect("alice", a1)
    await manager.connect("alice", a2)
    await manager.connect("bob", b)
    await manager.connect("carol", c)
    await manager.broadcast({"all": 1})
    await manager.broadcast({"not": "alice"}, exclude_user="alice")
    for ws in (a1, a2, b, c):
        assert await ws.next_json() == {"all": 1}
    assert await b.next_json() == {"not": "alice"}
    assert await c.next_json() == {"not": "alice"}
    assert a1.unread() == a2.unread() == []


async def test_order_is_kept_per_connection(manager: ConnectionManager) -> None:
    """Messages from one sender reach a connection in the order sent, whatever the path."""
    ws = sock()
    await manager.connect("alice", ws)
    await manager.join_room("alice", "r")
    for i in range(300):
        if i % 3 == 0:
            await manager.send_to_user("alice", str(i))
        elif i % 3 == 1:
            await manager.broadcast(str(i))
        else:
            await manager.broadcast_to_room("r", str(i))
    assert [await ws.next() for _ in range(300)] == [str(i) for i in range(300)]


# --- rooms -----------------------------------------------------------------------------


async def test_rooms_joined_before_and_after_connecting(manager: ConnectionManager) -> None:
    """Room membership belongs to the user: it covers connections opened later."""
    await manager.join_room("alice", "general")  # before connecting
    a1 = sock()
    await manager.connect("alice", a1)
    b = sock()
    await manager.connect("bob", b)
    await manager.join_room("bob", "general")  # after connecting
    a2 = sock()
    await manager.connect("alice", a2)  # a later connection of a member
    assert manager.get_room_users("general") == ["alice", "bob"]
    assert manager.room_count == 1
    await manager.broadcast_to_room("general", {"msg": "Hello room!"})
    for ws in (a1, a2, b):
        assert await ws.next_json() == {"msg": "Hello room!"}


async def test_room_exclude_and_leave(manager: ConnectionManager) -> None:
    """exclude_user skips the sender; leave_room stops delivery."""
    a, b, c = sock(), sock(), sock()
    for user, ws in (("alice", a), ("bob", b), ("carol", c)):
        await manager.connect(user, ws)
    await manager.join_room("alice", "general")
    await manager.join_room("alice", "vip")
    await manager.join_room("bob", "general")
    assert manager.room_count == 2
    await manager.broadcast_to_room("general", "from alice", exclude_user="alice")
    assert await b.next() == "from alice"
    await manager.leave_room("alice", "general")
    await manager.broadcast_to_room("general", "after leave")
    assert await b.next() == "after leave"
    await manager.broadcast_to_room("vip", "vip only")
    assert await a.next() == "vip only"
    assert a.unread() == [] and b.unread() == [] and c.sent == []
    assert manager.get_room_users("general") == ["bob"]
    await manager.leave_room("bob", "general")
    assert manager.get_room_users("general") == []
    assert manager.room_count == 1


async def test_last_disconnect_leaves_all_rooms(manager: ConnectionManager) -> None:
    """When a user's last connection ends, the user leaves every room."""
    a1, a2 = sock(), sock()
    await manager.connect("alice", a1)
    await manager.connect("alice", a2)
    await manager.join_room("alice", "general")
    await manager.disconnect("alice", a1)
    assert manager.get_room_users("general") == ["alice"]
    await manager.disconnect("alice", a2)
    assert manager.get_room_users("general") == []
    assert manager.room_count == 0


# --- disconnecting ---------------------------------------------------------------------


async def test_disconnect_one_connection(manager: ConnectionManager) -> None:
    """disconnect(user, ws) closes that socket with 1000 and keeps the user's others."""
    a1, a2 = sock(), sock()
    await manager.connect("alice", a1)
    await manager.connect("alice", a2)
    await manager.disconnect("alice", a1)
    assert a1.close_code == 1000
    assert not a2.closed
    assert manager.connection_count == 1
    assert manager.is_user_connected("alice")
    await manager.disconnect("alice", a1)  # again: nothing happens
    assert manager.connection_count == 1


async def test_disconnect_all_of_a_user(manager: ConnectionManager) -> None:
    """disconnect(user) closes and removes all the user's connections."""
    a1, a2, b = sock(), sock(), sock()
    await manager.connect("alice", a1)
    await manager.connect("alice", a2)
    await manager.connect("bob", b)
    await manager.disconnect("alice")
    assert (a1.close_code, a2.close_code) == (1000, 1000)
    assert not b.closed
    assert manager.active_users == ["bob"]
    assert manager.connection_count == 1


async def test_disconnect_flushes_queued_messages(manager: ConnectionManager) -> None:
    """A message sent just before disconnect() is delivered before the close."""
    ws = sock()
    await manager.connect("alice", ws)
    ws.stall()
    await manager.send_to_user("alice", "goodbye")
    closing = asyncio.create_task(manager.disconnect("alice", ws, code=4000, reason="kicked"))
    await asyncio.sleep(0)
    assert not ws.closed
    ws.resume()
    await closing
    assert ws.sent == ["goodbye"]
    assert (ws.close_code, ws.close_reason) == (4000, "kicked")


async def test_shutdown_closes_everything_with_1001(manager: ConnectionManager) -> None:
    """shutdown() closes every socket with 1001 and runs on_disconnect for each."""
    gone: list[str] = []
    manager.on_disconnect(lambda user, ws: gone.append(user))
    socks = [sock() for _ in range(5)]
    for i, ws in enumerate(socks):
        await manager.connect(f"u{i % 2}", ws)
    await manager.shutdown()
    assert [ws.close_code for ws in socks] == [1001] * 5
    assert sorted(gone) == ["u0", "u0", "u0", "u1", "u1"]
    assert manager.connection_count == 0
    assert manager.ops.channel_name is None


# --- hooks -----------------------------------------------------------------------------


async def test_hooks_run_in_order_sync_and_async(manager: ConnectionManager) -> None:
    """Several on_connect/on_disconnect handlers, sync or async, run in order."""
    calls: list[tuple[str, str, bool]] = []

    @manager.on_connect
    async def first(user_id: str, websocket: Any) -> None:
        calls.append(("connect1", user_id, manager.is_user_connected(user_id)))

    @manager.on_connect
    def second(user_id: str, websocket: Any) -> None:
        calls.append(("connect2", user_id, websocket is ws))

    @manager.on_disconnect
    async def gone(user_id: str, websocket: Any) -> None:
        calls.append(("disconnect", user_id, manager.is_user_connected(user_id)))

    ws = sock()
    await manager.connect("alice", ws)
    await manager.disconnect("alice", ws)
    assert calls == [
        ("connect1", "alice", True),
        ("connect2", "alice", True),
        ("disconnect", "alice", False),
    ]


async def test_hook_that_raises_is_logged_and_harmless(
    manager: ConnectionManager, caplog: pytest.LogCaptureFixture
) -> None:
    """A failing hook is logged and counted; state is whole; later hooks still run."""
    ran: list[str] = []

    @manager.on_connect
    async def broken(user_id: str, websocket: Any) -> None:
        raise RuntimeError("boom")

    @manager.on_connect
    async def fine(user_id: str, websocket: Any) -> None:
        ran.append(user_id)

    ws = sock()
    with caplog.at_level(logging.ERROR, logger="svc_infra.websocket.manager"):
        await manager.connect("alice", ws)
    assert ran == ["alice"]
    assert manager.is_user_connected("alice")
    assert manager.stats.hook_errors == 1
    assert "on_connect hook" in caplog.text and "boom" in caplog.text
    await manager.send_to_user("alice", "ok")
    assert await ws.next() == "ok"


async def test_spec_lifecycle_hooks_broadcast(manager: ConnectionManager) -> None:
    """Hooks may use the manager itself, as in the spec's example."""

    @manager.on_connect
    async def handle_connect(user_id: str, websocket: Any) -> None:
        await manager.broadcast({"event": "user_joined", "user": user_id})

    @manager.on_disconnect
    async def handle_disconnect(user_id: str, websocket: Any) -> None:
        await manager.broadcast({"event": "user_left", "user": user_id})

    a, b = sock(), sock()
    await manager.connect("alice", a)
    await manager.connect("bob", b)
    await manager.disconnect("bob", b)
    assert await a.next_json() == {"event": "user_joined", "user": "alice"}
    assert await a.next_json() == {"event": "user_joined", "user": "bob"}
    assert await a.next_json() == {"event": "user_left", "user": "bob"}


# --- slow and broken sockets -----------------------------------------------------------


async def test_slow_consumer_is_evicted_and_others_keep_up() -> None:
    """A socket that stops taking data is closed with 1013 once its outbox is full."""
    mgr = ConnectionManager(InMemoryChannelLayer(), config=CONFIG.replace(outbox_limit=1000))
    try:
        slow, fast = sock(), sock()
        gone: list[str] = []
        mgr.on_disconnect(lambda user, ws: gone.append(user))
        await mgr.connect("slow", slow)
        await mgr.connect("fast", fast)
        slow.stall()
        for i in range(100):
            await mgr.broadcast(f"{i:0100d}")  # 100 characters each
        assert [await fast.next() for _ in range(100)] == [f"{i:0100d}" for i in range(100)]
        assert await slow.wait_closed() == CLOSE_SLOW_CONSUMER
        assert mgr.active_users == ["fast"]
        # The hooks run after the close, in the eviction's task.
        await wait_until(lambda: gone == ["slow"])
        assert mgr.stats.slow_consumers == 1
        # Ten 100-character frames filled the outbox; the eleventh overflowed it.
        assert mgr.stats.frames_dropped == 11
    finally:
        await mgr.shutdown()


async def test_one_oversized_message_is_still_delivered() -> None:
    """A single message bigger than the outbox limit goes through when the outbox is empty."""
    mgr = ConnectionManager(InMemoryChannelLayer(), config=CONFIG.replace(outbox_limit=10))
    try:
        ws = sock()
        await mgr.connect("alice", ws)
        await mgr.send_to_user("alice", "x" * 1000)
        assert await ws.next() == "x" * 1000
        assert not ws.closed
    finally:
        await mgr.shutdown()


async def test_failed_send_removes_the_socket_once(manager: ConnectionManager) -> None:
    """A socket whose send fails is dropped, and on_disconnect runs exactly once."""
    gone: list[str] = []
    manager.on_disconnect(lambda user, ws: gone.append(user))
    bad, good = sock(), sock()
    await manager.connect("alice", bad)
    await manager.connect("bob", good)
    bad.fail_with = ConnectionResetError("peer vanished")
    await manager.broadcast("one")
    assert await good.next() == "one"
    assert await bad.wait_closed() == 1011
    assert manager.active_users == ["bob"]
    await manager.disconnect("alice", bad)  # the route's finally: no second hook
    await manager.broadcast("two")
    assert await good.next() == "two"
    # The hooks run after the close, in its task; the route's disconnect above was
    # awaited, so a second hook would be there by now.
    await wait_until(lambda: gone == ["alice"])
    assert manager.stats.send_failures == 1


# --- several managers on one layer: processes in miniature -----------------------------


@pytest.fixture
async def pair() -> AsyncIterator[tuple[ConnectionManager, ConnectionManager]]:
    layer = InMemoryChannelLayer()
    a = ConnectionManager(layer, config=CONFIG)
    b = ConnectionManager(layer, config=CONFIG)
    await a.start()
    await b.start()
    yield a, b
    await a.shutdown()
    await b.shutdown()


async def test_delivery_across_managers(
    pair: tuple[ConnectionManager, ConnectionManager],
) -> None:
    """send_to_user, broadcast and exclude_user reach sockets held by another manager."""
    a, b = pair
    on_a, on_b = sock(), sock()
    await a.connect("alice", on_a)
    await b.connect("bob", on_b)
    await a.send_to_user("bob", {"to": "bob"})
    assert await on_b.next_json() == {"to": "bob"}
    await b.broadcast("all")
    assert await on_a.next() == "all"
    assert await on_b.next() == "all"
    await a.broadcast("not bob", exclude_user="bob")
    assert await on_a.next() == "not bob"
    await settle(a, b)
    assert on_b.unread() == []


async def test_rooms_across_managers(pair: tuple[ConnectionManager, ConnectionManager]) -> None:
    """join_room on one manager takes effect for the user's sockets on another."""
    a, b = pair
    alice_b, bob_a = sock(), sock()
    await b.connect("alice", alice_b)
    await a.connect("bob", bob_a)
    await a.join_room("alice", "general")  # alice is connected to b only
    await a.join_room("bob", "general")
    await settle(a, b)
    assert b.get_room_users("general") == ["alice"]
    await a.broadcast_to_room("general", "hi room", exclude_user="bob")
    assert await alice_b.next() == "hi room"
    await b.broadcast_to_room("general", "from b")
    assert await bob_a.next() == "from b"
    assert await alice_b.next() == "from b"
    await a.leave_room("alice", "general")
    await settle(a, b)
    await a.broadcast_to_room("general", "after leave")
    assert await bob_a.next() == "after leave"
    await settle(a, b)
    assert alice_b.unread() == []


async def test_disconnect_user_across_managers(
    pair: tuple[ConnectionManager, ConnectionManager],
) -> None:
    """disconnect(user) on one manager closes the user's sockets on the other."""
    a, b = pair
    on_b = sock()
    await b.connect("alice", on_b)
    await a.disconnect("alice")
    assert await on_b.wait_closed() == 1000
    assert not b.is_user_connected("alice")


async def test_plain_channels_code_can_reach_users_and_rooms(
    pair: tuple[ConnectionManager, ConnectionManager],
) -> None:
    """Any Channels code can group_send the documented messages to users, rooms, everyone."""
    a, _ = pair
    ws = sock()
    await a.connect("alice", ws)
    await a.join_room("alice", "news")
    layer = a.ops.layer
    other = sock()
    await a.connect("bob", other)
    await layer.group_send(
        user_group("alice"), {"type": "ws.send", "text": "to alice", "user": "alice"}
    )
    await layer.group_send(room_group("news"), {"type": "ws.send", "text": "news", "room": "news"})
    await layer.group_send("ws.all", {"type": "ws.send", "bytes": b"everyone", "all": True})
    assert await ws.next() == "to alice"
    assert await ws.next() == "news"
    assert await ws.next() == b"everyone"
    assert await other.next() == b"everyone"
    assert other.unread() == []


async def test_a_layer_message_without_target_reaches_nobody(
    pair: tuple[ConnectionManager, ConnectionManager], caplog: pytest.LogCaptureFixture
) -> None:
    """ws.send without user, room or all=True is ignored and logged, never sent to all."""
    a, _ = pair
    alice, bob = sock(), sock()
    await a.connect("alice", alice)
    await a.connect("bob", bob)
    with caplog.at_level(logging.WARNING, logger="svc_infra.websocket.manager"):
        await a.ops.layer.group_send(user_group("alice"), {"type": "ws.send", "text": "oops"})
        await a.ops.layer.group_send(
            user_group("alice"), {"type": "ws.send", "text": "ok", "user": "alice"}
        )
        assert await alice.next() == "ok"
    assert alice.unread() == [] and bob.sent == []
    assert "without user, room or all=True" in caplog.text


async def test_channel_prefix_is_made_valid() -> None:
    """The spec's 'ws:' prefix works: characters Channels refuses become '.'."""
    mgr = ConnectionManager(InMemoryChannelLayer(), channel_prefix="app:ws:", config=CONFIG)
    try:
        assert mgr.prefix == "app.ws."
        ws = sock()
        await mgr.connect("alice", ws)
        await mgr.ops.layer.group_send(
            user_group("alice", "app.ws."), {"type": "ws.send", "text": "prefixed", "user": "alice"}
        )
        assert await ws.next() == "prefixed"
    finally:
        await mgr.shutdown()


async def test_group_membership_outlives_the_layers_group_expiry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Layers forget group members after group_expiry; refresh_groups joins them again."""
    import time as real_time

    import channels.layers

    now = [real_time.time()]

    class Clock:
        @staticmethod
        def time() -> float:
            return now[0]

    monkeypatch.setattr(channels.layers, "time", Clock)
    layer = InMemoryChannelLayer(group_expiry=60)
    mgr = ConnectionManager(layer, config=CONFIG)
    try:
        ws = sock()
        await mgr.connect("alice", ws)
        await mgr.join_room("alice", "news")
        message = {"type": "ws.send", "text": "still here", "room": "news"}
        now[0] += 3600  # an hour later: the layer has forgotten every member
        await layer.group_send(room_group("news"), message)
        await settle(mgr)
        assert ws.unread() == []
        await mgr.ops.refresh_groups()
        await layer.group_send(room_group("news"), message)
        assert await ws.next() == "still here"
        await layer.group_send(user_group("alice"), {**message, "room": None, "user": "alice"})
        assert await ws.next() == "still here"
        assert mgr._lifecycle.refresher is not None and not mgr._lifecycle.refresher.done()
    finally:
        await mgr.shutdown()
    assert mgr._lifecycle.refresher is None


async def test_last_activity_moves_when_a_message_is_delivered() -> None:
    """ConnectionInfo.last_activity is stamped when the manager queues a message for it."""
    from datetime import UTC, datetime

    manager = ConnectionManager(InMemoryChannelLayer())
    ws, other = MemoryTransport(timeout=timeout(5)), MemoryTransport(timeout=timeout(5))
    await manager.connect("alice", ws)
    await manager.connect("bob", other)
    old = datetime(2000, 1, 1, tzinfo=UTC)
    for info in (*manager.get_user_connections("alice"), *manager.get_user_connections("bob")):
        info.last_activity = old
    await manager.send_to_user("alice", {"hi": 1})
    assert await ws.next_json() == {"hi": 1}
    [alice] = manager.get_user_connections("alice")
    [bob] = manager.get_user_connections("bob")
    assert alice.last_activity > old
    assert bob.last_activity == old  # not a target
    await manager.shutdown()


# --- room grace: a reconnect within it keeps the rooms -----------------------------------


async def test_a_user_back_within_the_room_grace_keeps_their_rooms() -> None:
    mgr = ConnectionManager(InMemoryChannelLayer(), config=CONFIG.replace(room_grace=30))
    try:
        first = sock()
        await mgr.connect("ann", first)
        await mgr.join_room("ann", "lobby")
        await mgr.disconnect("ann", first)
        assert mgr.get_room_users("lobby") == ["ann"]  # within the grace
        again = sock()
        await mgr.connect("ann", again)
        await mgr.broadcast_to_room("lobby", "still here")
        assert await again.next() == "still here"
    finally:
        await mgr.shutdown()
    assert mgr.get_room_users("lobby") == []  # shutdown ends every grace


async def test_a_user_not_back_leaves_their_rooms_after_the_grace() -> None:
    mgr = ConnectionManager(InMemoryChannelLayer(), config=CONFIG.replace(room_grace=0.2))
    try:
        ws = sock()
        await mgr.connect("bob", ws)
        await mgr.join_room("bob", "lobby")
        await mgr.disconnect("bob", ws)
        assert mgr.get_room_users("lobby") == ["bob"]
        await wait_until(lambda: mgr.get_room_users("lobby") == [])
    finally:
        await mgr.shutdown()


async def test_without_a_grace_the_last_disconnect_leaves_the_rooms_at_once() -> None:
    mgr = ConnectionManager(InMemoryChannelLayer(), config=CONFIG)
    try:
        ws = sock()
        await mgr.connect("cy", ws)
        await mgr.join_room("cy", "lobby")
        await mgr.disconnect("cy", ws)
        assert mgr.get_room_users("lobby") == []
    finally:
        await mgr.shutdown()
