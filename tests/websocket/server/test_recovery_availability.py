"""A claimed position is always answered: never ``recovered: null`` for a client that
claimed positions, whatever state the manager or its history store is in.

The defect these pin (issue 24): a connection accepted while a shutdown was under
way found no history store, answered "nothing to recover", then delivered live
frames that moved the client past a gap.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from channels.layers import InMemoryChannelLayer

from svc_infra.websocket import (
    ChannelLayerError,
    ConnectionManager,
    ServerDrainingError,
    WebSocketConfig,
)
from svc_infra.websocket.close_codes import CloseCode
from svc_infra.websocket.server._history import Replay
from svc_infra.websocket.server._recovery import HistoryUnavailableError, Recovery
from svc_infra.websocket.wire import SUBPROTOCOL, split_frame
from tests.support import timeout
from tests.websocket.server.test_recovery import Client


def manager(size: int = 100) -> ConnectionManager:
    config = WebSocketConfig(history_size=size, close_timeout=1)
    return ConnectionManager(InMemoryChannelLayer(), config=config)


async def away_with_a_position(m: ConnectionManager) -> Client:
    """A v1 client that connected, got one message, and left: it holds positions."""
    c = Client()
    await m.connect("a", c.socket())
    c.read()
    await m.send_to_user("a", {"n": 1})
    assert c.read() == [{"n": 1}]
    await m.disconnect("a", c.ws)
    assert "user:a" in c.session.positions
    return c


class FailingStore:
    """A history store whose reads fail (Redis unreachable)."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.failing = True

    async def append(self, *args: Any) -> Any:
        return await self.real.append(*args)

    async def since(self, *args: Any) -> Replay:
        if self.failing:
            raise ConnectionError("history store unreachable")
        result: Replay = await self.real.since(*args)
        return result

    async def close(self) -> None:
        await self.real.close()


async def test_a_store_that_fails_for_a_claimed_position_closes_1013_before_any_frame() -> None:
    """The client is not told "nothing to recover": it is closed with 1013 (try
    again later) with nothing sent, keeps its positions, and recovers next time."""
    m = manager()
    c = await away_with_a_position(m)
    store = m._recovery.store
    failing = FailingStore(store)
    m._recovery.store = failing  # type: ignore[assignment]
    await m.send_to_user("a", {"n": 2})
    positions = dict(c.session.positions)
    ws = c.socket()
    await m.connect("a", ws)
    assert await ws.wait_closed() == CloseCode.TRY_AGAIN_LATER
    assert ws.sent == [], "a frame went out on a connection that could not recover"
    assert ws.close_reason == "history unavailable"
    assert not m.is_user_connected("a")
    assert m._recovery.results["deferred"] == 1
    assert c.session.positions == positions
    failing.failing = False
    await m.connect("a", c.socket())
    assert c.read() == [{"n": 2}]
    assert c.session.recovered is True
    await m.shutdown()


async def test_a_store_that_fails_for_a_new_client_lets_it_start_live() -> None:
    """A client that claimed nothing has nothing to lose: it is answered and served."""
    m = manager()
    await m.start()
    m._recovery.store = FailingStore(m._recovery.store)  # type: ignore[assignment]
    c = Client()
    await m.connect("a", c.socket())
    c.read()
    assert c.session.started and c.session.recovered is None
    assert c.ws is not None and not c.ws.closed
    await m.shutdown()


async def test_no_store_for_a_claimed_position_is_unavailable_not_nothing() -> None:
    """The manager's store is gone (stopped): the replay raises, the answer is 1013."""
    m = manager()
    c = await away_with_a_position(m)
    recovery: Recovery = m._recovery
    recovery.store = None
    ws = c.socket()
    await m.connect("a", ws)
    assert await ws.wait_closed() == CloseCode.TRY_AGAIN_LATER
    assert ws.sent == []
    with pytest.raises(HistoryUnavailableError):
        await recovery._replay("user:a", ("e", 1))
    await m.shutdown()


async def test_recording_without_a_store_sends_nothing() -> None:
    """A message that cannot get its offset is not sent at all (it would be missing
    from every later replay)."""
    m = manager()
    await m.start()
    recovery = m._recovery
    recovery.store = None
    with pytest.raises(ChannelLayerError) as caught:
        await recovery.record("user:a", '{"n":1}', None)
    assert caught.value.operation == "history"
    await m.shutdown()


async def test_a_claimed_stream_that_keeps_no_history_is_reported_unrecovered() -> None:
    """Positions in a stream that keeps no history here (the policy changed across a
    restart) are answered with ``recovered: false``, not left unanswered."""
    m = manager()
    c = await away_with_a_position(m)
    m.configure_history("user:*", size=0)
    await m.connect("a", c.socket())
    c.read()
    assert c.session.recovered is False
    assert c.session.unrecovered == ["user:a"]
    await m.shutdown()


async def test_a_connection_during_a_drain_is_closed_1001_with_the_v1_subprotocol() -> None:
    """Accepted with ``svc-infra.v1`` (so the client does not read "a server without
    recovery") and closed with 1001 before any frame."""
    m = manager()
    c = await away_with_a_position(m)
    await m.drain()
    ws = c.socket()
    with pytest.raises(ServerDrainingError):
        await m.connect("a", ws)
    assert ws.accepted_subprotocol == SUBPROTOCOL
    assert ws.close_code == CloseCode.GOING_AWAY
    assert ws.sent == []
    await m.shutdown()
    await m.connect("a", c.socket())  # after shutdown() the manager starts again
    c.read()
    # In-memory history did not outlive the shutdown: said so, stream by stream.
    assert c.session.recovered is False
    assert "user:a" in c.session.unrecovered
    await m.shutdown()


async def test_a_connection_that_arrives_during_shutdown_is_refused() -> None:
    """While shutdown() runs (a slow close in flight), a new connection is closed
    with 1001 before any frame; it does not restart the manager half-way."""
    m = manager()
    c = await away_with_a_position(m)
    slow = Client()
    await m.connect("b", slow.socket())
    assert slow.ws is not None
    slow.ws.stall()  # its flush holds shutdown() for a moment
    await m.send_to_user("b", {"n": 1})
    stopping = asyncio.create_task(m.shutdown())
    await asyncio.sleep(0)
    assert m._gate.stopping
    ws = c.socket()
    with pytest.raises(ServerDrainingError):
        await m.connect("a", ws)
    assert ws.close_code == CloseCode.GOING_AWAY and ws.sent == []
    slow.ws.resume()
    await asyncio.wait_for(stopping, timeout(5))
    assert m._recovery.store is None and not m._lifecycle.started()


async def test_a_start_waiting_behind_a_shutdown_gets_a_fresh_store() -> None:
    """start() and shutdown() never interleave: a start queued behind a shutdown
    finds the store the shutdown closed replaced by a new one."""
    m = manager()
    await m.start()
    old = m._recovery.store
    stopping = asyncio.create_task(m.shutdown())
    await asyncio.sleep(0)
    await asyncio.wait_for(m.start(), timeout(5))
    await stopping
    # Whichever finished last, the manager is consistent: started with a store, or
    # stopped without one.
    started = m._lifecycle.started()
    assert (m._recovery.store is not None) == started
    assert m._recovery.store is not old
    await m.shutdown()


async def test_after_a_signal_drain_the_manager_refuses_for_good() -> None:
    """SIGTERM drained and stopped the manager: connections the server still accepts
    before it stops listening are refused, and do not start the manager again."""
    m = manager()
    c = await away_with_a_position(m)
    await m._drain_and_stop()
    ws = c.socket()
    with pytest.raises(ServerDrainingError):
        await m.connect("a", ws)
    assert ws.close_code == CloseCode.GOING_AWAY and ws.sent == []
    assert not m._lifecycle.started()


async def test_a_room_joined_during_the_replay_is_replayed_after_the_control_frame() -> None:
    """Another connection of the user joins a room while this one's replay is being
    read: the room is replayed by this connection's own replay, from its claimed
    position, after its control frame (not ahead of it by the join's replay)."""
    m = manager()
    c = Client()
    await m.connect("a", c.socket())
    await m.join_room("a", "r")
    await m.broadcast_to_room("r", {"n": 1})
    c.read()
    await m.disconnect("a", c.ws)
    await m.leave_room("a", "r")
    for n in (2, 3):
        await m.broadcast_to_room("r", {"n": n})  # recorded; "a" is not a member
    store = m._recovery.store
    assert store is not None
    gate = asyncio.Event()
    real_since = store.since

    async def slow_since(*args: Any) -> Any:
        await gate.wait()
        return await real_since(*args)

    store.since = slow_since  # type: ignore[method-assign]
    ws = c.socket()
    connecting = asyncio.create_task(m.connect("a", ws))
    await asyncio.sleep(0.01)
    # As the user's other connection's route does; it must not wait for this replay.
    await asyncio.wait_for(m.join_room("a", "r"), timeout(5))
    await m.broadcast_to_room("r", {"n": 4})  # live, while the replay is read
    assert ws.sent == [], "a frame went out ahead of the control frame"
    gate.set()
    await asyncio.wait_for(connecting, timeout(5))
    header = split_frame(ws.sent[0])[0]
    assert header["t"] == "recovery" and header["recovered"] is True
    assert c.read() == [{"n": 2}, {"n": 3}, {"n": 4}]
    await m.shutdown()
