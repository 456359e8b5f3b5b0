"""Recovery in process: the manager, in-memory history and v1 sockets (MemoryTransport)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from channels.layers import InMemoryChannelLayer

from svc_infra.websocket import ConnectionManager, WebSocketConfig
from svc_infra.websocket.client._recovery import RecoverySession
from svc_infra.websocket.server._history import HistoryPolicy, MemoryHistory
from svc_infra.websocket.testing import MemoryTransport
from svc_infra.websocket.wire import (
    RECOVER_PARAM,
    SUBPROTOCOL,
    decode_positions,
    encode_positions,
    split_frame,
    with_positions,
)
from tests.support import timeout, wait_until

V1 = [SUBPROTOCOL]


def manager(size: int = 100, **overrides: Any) -> ConnectionManager:
    config = WebSocketConfig(history_size=size, close_timeout=1, **overrides)
    return ConnectionManager(InMemoryChannelLayer(), config=config)


class Client:
    """A v1 client on MemoryTransports: reads frames and keeps positions."""

    def __init__(self) -> None:
        self.session = RecoverySession()
        self.ws: MemoryTransport | None = None
        self.payloads: list[Any] = []

    def socket(self) -> MemoryTransport:
        query = with_positions("ws://x/", self.session.positions).partition("?")[2]
        self.ws = MemoryTransport(V1, timeout=timeout(5), query_string=query.encode())
        self.session.begin(True)
        return self.ws

    def read(self) -> list[Any]:
        """Apply every frame sent so far; return the new payloads."""
        assert self.ws is not None
        new = []
        while self.ws.unread():
            frame = self.ws.sent[self.ws._read]
            self.ws._read += 1
            payload = self.session.unwrap(frame)
            if payload is not None:
                new.append(json.loads(payload))
        self.payloads += new
        return new


async def test_a_reconnect_replays_what_was_missed_then_goes_live() -> None:
    """Missed user and broadcast messages come first, once, then live ones."""
    m = manager()
    c = Client()
    await m.connect("a", c.socket())
    c.read()
    assert c.session.started and c.session.recovered is None
    await m.send_to_user("a", {"n": 1})
    assert c.read() == [{"n": 1}]
    await m.disconnect("a", c.ws)
    await m.send_to_user("a", {"n": 2})
    await m.broadcast({"n": 3})
    await m.connect("a", c.socket())
    await m.send_to_user("a", {"n": 4})
    assert c.read() == [{"n": 2}, {"n": 3}, {"n": 4}]
    assert c.session.recovered is True and c.session.unrecovered == []
    await m.shutdown()


async def test_live_frames_during_a_replay_are_held_and_not_repeated() -> None:
    """A message published while the replay is fetched arrives once, after the replay."""
    m = manager()
    c = Client()
    await m.connect("a", c.socket())
    c.read()
    await m.disconnect("a", c.ws)
    for n in range(3):
        await m.send_to_user("a", {"n": n})
    gate = asyncio.Event()
    store = m._recovery.store
    assert store is not None
    real_since = store.since

    async def slow_since(*args: Any) -> Any:
        await gate.wait()
        return await real_since(*args)

    store.since = slow_since  # type: ignore[method-assign]
    connecting = asyncio.create_task(m.connect("a", c.socket()))
    await asyncio.sleep(0.01)
    await m.send_to_user("a", {"n": 3})  # live, during the replay
    gate.set()
    await asyncio.wait_for(connecting, timeout(5))
    assert c.read() == [{"n": n} for n in range(4)]
    await m.shutdown()


async def test_a_gap_beyond_the_history_is_reported_as_unrecovered() -> None:
    """With 3 messages kept and 5 missed, nothing is replayed and the stream is named."""
    m = manager(size=3)
    c = Client()
    await m.connect("a", c.socket())
    c.read()
    await m.disconnect("a", c.ws)
    for n in range(5):
        await m.send_to_user("a", {"n": n})
    await m.connect("a", c.socket())
    assert c.read() == []
    assert c.session.recovered is False
    assert c.session.unrecovered == ["user:a"]
    await m.send_to_user("a", {"n": 5})
    assert c.read() == [{"n": 5}]  # live delivery goes on
    await m.shutdown()


async def test_a_changed_epoch_is_unrecovered_never_matched_by_offset() -> None:
    """A position from another life of the stream is refused, whatever its offset."""
    history = MemoryHistory()
    offset, epoch, _ = await history.append("s", "x", None, 10, 60)
    replay = await history.since("s", ("another-epoch", offset), 10, 60)
    assert replay.recovered is False and replay.entries == []
    assert (await history.since("s", (epoch, 0), 10, 60)).recovered is True
    assert (await history.since("s", (epoch, 5), 10, 60)).recovered is False  # ahead of top


async def test_a_room_joined_after_connect_is_replayed_from_the_clients_position() -> None:
    """The chat route joins after connect: the room's missed messages come at the join."""
    m = manager()
    c = Client()
    await m.connect("a", c.socket())
    await m.join_room("a", "chat")
    await m.broadcast_to_room("chat", {"n": 1})
    c.read()
    await m.disconnect("a", c.ws)  # the last connection: the user leaves the room
    await m.broadcast_to_room("chat", {"n": 2})
    await m.connect("a", c.socket())
    assert c.read() == []
    await m.join_room("a", "chat")
    assert c.read() == [{"n": 2}]
    assert c.session.recovered is True
    await m.shutdown()


async def test_excluded_messages_are_not_replayed_to_the_excluded_user() -> None:
    """exclude_user holds for the replay too."""
    m = manager()
    c = Client()
    await m.connect("a", c.socket())
    c.read()
    await m.disconnect("a", c.ws)
    await m.broadcast({"n": 1}, exclude_user="a")
    await m.broadcast({"n": 2})
    await m.connect("a", c.socket())
    assert c.read() == [{"n": 2}]
    assert c.session.recovered is True
    await m.shutdown()


async def test_a_plain_client_gets_todays_frames_and_history_off_streams_have_no_offset() -> None:
    """No subprotocol: bare payloads. A room with history off: headers without offsets."""
    m = manager()
    m.configure_history("room:dash*", size=0)
    plain = MemoryTransport(timeout=timeout(5))
    c = Client()
    await m.connect("p", plain)
    await m.connect("a", c.socket())
    await m.join_room("p", "dash-1")
    await m.join_room("a", "dash-1")
    c.read()
    await m.broadcast_to_room("dash-1", {"n": 1})
    assert await plain.next() == '{"n":1}'
    assert c.ws is not None
    header, payload = split_frame(c.ws.sent[-1])
    assert header == {"s": "room:dash-1"} and payload == '{"n":1}'
    await m.shutdown()


async def test_binary_payloads_carry_the_header_before_a_newline() -> None:
    """A binary message is a binary v1 frame: header, newline, the bytes unchanged."""
    m = manager()
    c = Client()
    await m.connect("a", c.socket())
    c.read()
    await m.send_to_user("a", b"\x00\n\xff")
    assert c.ws is not None
    header, payload = split_frame(c.ws.sent[-1])
    assert header["s"] == "user:a" and header["o"] == 1
    assert payload == b"\x00\n\xff"
    await m.shutdown()


async def test_malformed_positions_count_as_none() -> None:
    """A garbled svc_recover gives the current positions, not an error."""
    m = manager()
    ws = MemoryTransport(V1, timeout=timeout(5), query_string=f"{RECOVER_PARAM}=%%%".encode())
    await m.connect("a", ws)
    header, _ = split_frame(await ws.next())
    assert header["t"] == "recovery" and header["recovered"] is None
    await m.shutdown()


async def test_a_replay_over_the_outbox_limit_evicts_as_a_slow_consumer() -> None:
    """Outbox limits hold during a replay: a stalled client is closed with 1013."""
    m = manager(size=1000, outbox_limit=2000)
    c = Client()
    await m.connect("a", c.socket())
    c.read()
    await m.disconnect("a", c.ws)
    for n in range(200):
        await m.send_to_user("a", {"n": n, "pad": "x" * 50})
    ws = c.socket()
    ws.stall()
    await m.connect("a", ws)
    assert await ws.wait_closed() == 1013
    assert m.stats.slow_consumers == 1
    await m.shutdown()


def test_positions_round_trip_through_the_query_parameter() -> None:
    """encode_positions and decode_positions are inverses; other parameters stay."""
    positions = {"room:général": ("e1", 7), "user:42": ("e2", 0)}
    assert decode_positions(encode_positions(positions)) == positions
    url = with_positions("ws://h/ws?room=a", positions)
    assert url.startswith("ws://h/ws?room=a&svc_recover=")
    assert with_positions(url, {}) == "ws://h/ws?room=a"
    with pytest.raises(ValueError, match="JSON object"):
        decode_positions(encode_positions({}).replace("e30", "W10"))  # "[]"


def test_history_policy_per_stream() -> None:
    """Later rules win; size 0 turns a stream's history off."""
    policy = HistoryPolicy(100, 60)
    policy.set("room:*", size=10)
    policy.set("room:dash*", size=0)
    assert policy.of("user:a") == (100, 60)
    assert policy.of("room:chat") == (10, 60)
    assert policy.of("room:dash-1") is None
    with pytest.raises(ValueError, match="history size"):
        policy.set("x", size=-1)


async def test_memory_history_is_bounded_by_size_ttl_and_idle_streams() -> None:
    """A ring keeps at most its size, nothing older than its TTL, and a stream idle for
    META_TTL is forgotten (its next message starts a new epoch)."""
    from svc_infra.websocket.server._history import META_TTL

    now = [1000.0]
    history = MemoryHistory()
    history._clock = lambda: now[0]  # type: ignore[method-assign]
    for n in range(500):
        await history.append("s", str(n), None, 50, 60)
    ring = history._streams["s"]
    assert len(ring.entries) == 50 and ring.entries[0].offset == 451
    now[0] += 61
    replay = await history.since("s", (ring.epoch, 450), 50, 60)
    assert replay.recovered is False and len(ring.entries) == 0  # expired by TTL
    epoch = ring.epoch
    now[0] += META_TTL + 1
    await history.append("other", "x", None, 50, 60)
    assert "s" not in history._streams  # idle too long: forgotten
    offset, new_epoch, _ = await history.append("s", "y", None, 50, 60)
    assert offset == 1 and new_epoch != epoch


async def test_history_meta_ttl_bounds_how_long_an_idle_stream_is_recovered() -> None:
    """history_meta_ttl=120, ttl=60: a client back after 100 s that missed nothing is
    recovered (its messages expired, the position did not); after 130 s the stream
    starts a new epoch. A stream's ttl longer than the meta TTL wins."""
    now = [1000.0]
    history = MemoryHistory(meta_ttl=120)
    history._clock = lambda: now[0]  # type: ignore[method-assign]
    offset, epoch, _ = await history.append("s", "x", None, 10, 60)
    now[0] += 100
    assert (await history.since("s", (epoch, offset), 10, 60)).recovered is True
    now[0] += 130
    replay = await history.since("s", (epoch, offset), 10, 60)
    assert replay.recovered is False and replay.epoch != epoch
    offset, epoch, _ = await history.append("long", "x", None, 10, 600)
    now[0] += 300  # past the meta TTL, within the stream's own ttl
    await history.append("other", "y", None, 10, 60)  # a sweep of idle streams
    assert "long" in history._streams
    replay = await history.since("long", (epoch, offset - 1), 10, 600)
    assert replay.recovered is True and [e.frame for e in replay.entries] == ["x"]


async def test_frames_overtaken_by_another_process_go_out_in_offset_order() -> None:
    """Offset 3 delivered here before offset 2 arrives from the layer: the client
    gets 2 then 3, each once."""
    m = manager()
    c = Client()
    await m.connect("a", c.socket())
    c.read()
    store = m._recovery.store
    assert store is not None
    offsets = [await store.append("user:a", f'{{"n":{n}}}', None, 100, 60) for n in (1, 2, 3)]
    epoch = offsets[0][1]
    deliver = m._publisher.deliver
    deliver('{"n":1}', user="a", offset=1, epoch=epoch)
    deliver('{"n":3}', user="a", offset=3, epoch=epoch)  # overtook 2
    assert c.read() == [{"n": 1}]
    deliver('{"n":2}', user="a", offset=2, epoch=epoch)
    deliver('{"n":2}', user="a", offset=2, epoch=epoch)  # a duplicate
    assert c.read() == [{"n": 2}, {"n": 3}]
    await m.shutdown()


async def test_a_gap_that_does_not_close_is_filled_from_history() -> None:
    """Offset 2 never arrives live: after a moment it is fetched from history."""
    m = manager()
    c = Client()
    await m.connect("a", c.socket())
    c.read()
    store = m._recovery.store
    assert store is not None
    _, epoch, _ = await store.append("user:a", '{"n":1}', None, 100, 60)
    await store.append("user:a", '{"n":2}', None, 100, 60)
    await store.append("user:a", '{"n":3}', None, 100, 60)
    m._publisher.deliver('{"n":1}', user="a", offset=1, epoch=epoch)
    m._publisher.deliver('{"n":3}', user="a", offset=3, epoch=epoch)
    assert c.ws is not None
    await c.ws.next()  # n=1
    assert await c.ws.next() == f'{{"s":"user:a","o":2,"e":"{epoch}"}}\n{{"n":2}}'
    c.read()
    assert c.payloads[-1] == {"n": 3} and c.session.recovered is None
    await m.shutdown()


async def test_a_gap_history_cannot_fill_is_reported_then_passed() -> None:
    """Offset 2 is gone from history too: the client is told, then gets 3."""
    m = manager(size=1)
    c = Client()
    await m.connect("a", c.socket())
    c.read()
    store = m._recovery.store
    assert store is not None
    _, epoch, _ = await store.append("user:a", '{"n":1}', None, 1, 60)
    await store.append("user:a", '{"n":2}', None, 1, 60)
    await store.append("user:a", '{"n":3}', None, 1, 60)  # keeps only 3
    m._publisher.deliver('{"n":1}', user="a", offset=1, epoch=epoch)
    m._publisher.deliver('{"n":3}', user="a", offset=3, epoch=epoch)
    ws = c.ws
    assert ws is not None
    await wait_until(lambda: len(ws.sent) == 4)  # recovery, n=1, the report, n=3
    header, _ = split_frame(ws.sent[2])
    assert header["t"] == "stream" and header["recovered"] is False
    assert c.read() == [{"n": 1}, {"n": 3}]
    assert c.session.recovered is False and c.session.unrecovered == ["user:a"]
    await m.shutdown()


async def test_an_excluded_offset_leaves_no_gap() -> None:
    """The excluded user's connection skips the offset: the next frame is not held."""
    m = manager()
    c = Client()
    await m.connect("a", c.socket())
    c.read()
    await m.broadcast({"n": 1}, exclude_user="a")
    await m.broadcast({"n": 2})
    assert c.read() == [{"n": 2}]
    assert c.ws is not None and c.ws.sent[-1].startswith('{"s":"broadcast","o":2')
    session = m._registry.user_connections("a")[0].session
    assert session is not None and session.pending == {}
    await m.shutdown()


async def test_a_room_joined_while_away_is_reported_unrecovered_at_the_reconnect() -> None:
    """Within the room grace the user is added to a room while no connection is open:
    no connection got the room's position, so the reconnect cannot tell what the room
    had since the join. It says so rather than start the room silently at its top."""
    m = manager(room_grace=30)
    c = Client()
    await m.connect("a", c.socket())
    c.read()
    await m.disconnect("a", c.ws)
    await m.join_room("a", "chat")  # while away
    await m.broadcast_to_room("chat", {"n": 1})
    await m.connect("a", c.socket())
    c.read()
    assert c.session.recovered is False and c.session.unrecovered == ["room:chat"]
    await m.broadcast_to_room("chat", {"n": 2})
    assert c.read() == [{"n": 2}]  # live from there, without a gap
    # A client that saw the room before gets it back, recovered.
    await m.disconnect("a", c.ws)
    await m.broadcast_to_room("chat", {"n": 3})
    await m.connect("a", c.socket())
    assert c.read() == [{"n": 3}]
    assert c.session.recovered is True
    await m.shutdown()
