"""Room membership and group calls when the layer is slow: changes never interleave."""

from __future__ import annotations

import asyncio
from typing import Any

from channels.layers import InMemoryChannelLayer

from svc_infra.websocket import ConnectionManager, WebSocketConfig
from svc_infra.websocket.groups import room_group, user_group
from svc_infra.websocket.testing import MemoryTransport
from tests.support import timeout, wait_until


class GatedLayer(InMemoryChannelLayer):  # type: ignore[misc]
    """An in-memory layer whose group_add or group_discard waits for a gate."""

    def __init__(self) -> None:
        super().__init__()
        self.gate: asyncio.Event | None = None
        self.gated = ""  # "add" or "discard"
        self.waiting = asyncio.Event()

    async def _maybe_wait(self, kind: str) -> None:
        if self.gate is not None and self.gated == kind:
            self.waiting.set()
            await self.gate.wait()

    async def group_add(self, group: str, channel: str) -> None:
        await self._maybe_wait("add")
        await super().group_add(group, channel)

    async def group_discard(self, group: str, channel: str) -> None:
        await self._maybe_wait("discard")
        await super().group_discard(group, channel)

    def members(self, group: str) -> set[Any]:
        return set(self.groups.get(group, {}))


def sock() -> MemoryTransport:
    return MemoryTransport(timeout=timeout(5))


async def test_a_newer_room_set_wins_over_one_still_joining_groups() -> None:
    layer = GatedLayer()
    m = ConnectionManager(layer, config=WebSocketConfig(close_timeout=1))
    await m.connect("u", sock())
    layer.gate, layer.gated = asyncio.Event(), "add"
    older = asyncio.create_task(m._rooms.apply("u", ["a", "b"], 2))
    await asyncio.wait_for(layer.waiting.wait(), timeout(5))
    newer = asyncio.create_task(m._rooms.apply("u", ["a"], 3))
    await asyncio.sleep(0)
    layer.gate.set()
    await asyncio.wait_for(asyncio.gather(older, newer), timeout(5))
    assert m.get_room_users("a") == ["u"] and m.get_room_users("b") == []
    assert m.ops.channel_name in layer.members(room_group("a", m.prefix))
    assert m.ops.channel_name not in layer.members(room_group("b", m.prefix))
    await m.shutdown()


async def test_a_quick_reconnect_keeps_the_user_group() -> None:
    """The last socket closes (group_discard in flight), the user reconnects at once:
    the manager ends up in the user's group."""
    layer = GatedLayer()
    m = ConnectionManager(layer, config=WebSocketConfig(close_timeout=1))
    first = sock()
    await m.connect("u", first)
    layer.gate, layer.gated = asyncio.Event(), "discard"
    closing = asyncio.create_task(m.disconnect("u", first))
    await asyncio.wait_for(layer.waiting.wait(), timeout(5))
    reconnect = asyncio.create_task(m.connect("u", sock()))
    await asyncio.sleep(0.01)
    layer.gate.set()
    await asyncio.wait_for(asyncio.gather(closing, reconnect), timeout(5))
    await wait_until(lambda: m.ops.channel_name in layer.members(user_group("u", m.prefix)))
    await m.shutdown()


async def test_a_start_cancelled_half_way_still_joins_the_broadcast_group() -> None:
    layer = GatedLayer()
    layer.gate, layer.gated = asyncio.Event(), "add"
    m = ConnectionManager(layer)
    starting = asyncio.create_task(m.start())
    await asyncio.wait_for(layer.waiting.wait(), timeout(5))
    starting.cancel()
    layer.gate.set()
    await wait_until(lambda: m.ops.channel_name in layer.members(f"{m.prefix}all"))
    await m.shutdown()


async def test_without_presence_a_departure_empties_a_room_joined_elsewhere() -> None:
    """Two managers on one layer (two processes), no presence: B joins a user who is
    connected to A to a room; when the user's last connection on A closes, B no
    longer lists them in the room (A tells every process that the user left)."""
    layer = InMemoryChannelLayer()
    config = WebSocketConfig(close_timeout=1)
    a = ConnectionManager(layer, config=config, presence=False)
    b = ConnectionManager(layer, config=config, presence=False)
    await b.start()
    here = MemoryTransport(timeout=timeout(5))
    await a.connect("u", here)
    await b.join_room("u", "lobby")
    assert b.get_room_users("lobby") == ["u"]
    await wait_until(lambda: a.get_room_users("lobby") == ["u"])  # through ws.join
    await a.disconnect("u", here)
    await wait_until(lambda: b.get_room_users("lobby") == [] and b.room_count == 0)
    assert a.get_room_users("lobby") == []
    await a.shutdown()
    await b.shutdown()


async def test_a_departure_elsewhere_leaves_the_rooms_of_a_user_still_connected_here() -> None:
    """No presence: the user is connected to A and B, in a room; the connection on
    A closes: B, where the user still is, keeps the room."""
    layer = InMemoryChannelLayer()
    config = WebSocketConfig(close_timeout=1)
    a = ConnectionManager(layer, config=config, presence=False)
    b = ConnectionManager(layer, config=config, presence=False)
    on_a, on_b = MemoryTransport(timeout=timeout(5)), MemoryTransport(timeout=timeout(5))
    await a.connect("u", on_a)
    await b.connect("u", on_b)
    await a.join_room("u", "lobby")
    await wait_until(lambda: b.get_room_users("lobby") == ["u"])
    await a.disconnect("u", on_a)
    await wait_until(lambda: a.get_room_users("lobby") == [])
    # B heard the departure (its handler ran) and kept the room: a frame sent
    # to the room after it still reaches the user on B.
    await a.broadcast_to_room("lobby", {"n": 1})
    assert await on_b.next_json() == {"n": 1}
    assert b.get_room_users("lobby") == ["u"]
    await a.shutdown()
    await b.shutdown()
