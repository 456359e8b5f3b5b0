"""Session limits in process: credential expiry, inbound size and rate, the per-user cap."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest
from channels.layers import InMemoryChannelLayer

from svc_infra.websocket import ConnectionManager, TooManyConnectionsError, WebSocketConfig
from svc_infra.websocket.auth import WSPrincipal
from svc_infra.websocket.server._limits import Bucket
from svc_infra.websocket.testing import MemoryTransport
from tests.support import timeout


def manager(**overrides: object) -> ConnectionManager:
    config = WebSocketConfig(close_timeout=1, **overrides)  # type: ignore[arg-type]
    return ConnectionManager(InMemoryChannelLayer(), config=config)


def sock(exp: float | None = None) -> MemoryTransport:
    claims = {} if exp is None else {"exp": exp}
    return MemoryTransport(timeout=timeout(5), scope={"principal": WSPrincipal("u", claims=claims)})


async def test_a_connection_is_closed_with_4401_when_its_token_expires() -> None:
    """exp 0.3 s ahead: closed with 4401 "token expired"; one without exp stays."""
    m = manager()
    expiring, lasting = sock(time.time() + 0.3), sock()
    await m.connect("u", expiring)
    await m.connect("v", lasting)
    assert await expiring.wait_closed() == 4401
    assert expiring.close_reason == "token expired"
    assert not lasting.closed and m.local_connection_count == 1
    assert m.stats.limited_expired == 1
    await m.shutdown()


async def test_expiry_is_one_heap_and_one_timer_for_every_connection() -> None:
    """Many connections share one timer; the earliest expiry closes first."""
    m = manager()
    socks = [sock(time.time() + 60 + i) for i in range(50)]
    soon = sock(time.time() + 0.2)
    for i, s in enumerate(socks):
        await m.connect(f"u{i}", s)
    await m.connect("soon", soon)
    assert len(m._expiry) == 51 and m._expiry._timer is not None
    assert await soon.wait_closed() == 4401
    assert not any(s.closed for s in socks)
    await m.shutdown()
    assert len(m._expiry) == 0 and m._expiry._timer is None


async def test_expiry_can_be_turned_off() -> None:
    """WS_CLOSE_ON_TOKEN_EXPIRY=false keeps the socket open past exp."""
    m = manager(close_on_token_expiry=False)
    s = sock(time.time() - 1)
    await m.connect("u", s)
    await asyncio.sleep(0.05)
    assert not s.closed
    await m.shutdown()


async def test_an_oversized_message_closes_with_1009_before_the_app_sees_it() -> None:
    """A message over max_message_size is refused and its connection closed."""
    m = manager(max_message_size=100)
    s, other = sock(), sock()
    await m.connect("u", s)
    await m.connect("v", other)
    assert s.client_sends("x" * 100) is None
    assert s.client_sends("é" * 60) == (1009, "message too big")  # 120 bytes in UTF-8
    assert await s.wait_closed() == 1009
    await m.broadcast({"still": "here"})
    assert await other.next_json() == {"still": "here"}
    assert m.stats.limited_size == 1 and m.stats.messages_received == 2
    await m.shutdown()


async def test_a_flood_closes_with_4429_and_nobody_else_is_slowed() -> None:
    """Rate 10/s, burst 5: the sixth message at once is over; others stay connected."""
    m = manager(inbound_rate=10, inbound_burst=5)
    s, other = sock(), sock()
    await m.connect("u", s)
    await m.connect("v", other)
    assert [s.client_sends("hi") for _ in range(5)] == [None] * 5
    assert s.client_sends("hi") == (4429, "rate limit")
    assert await s.wait_closed() == 4429
    assert other.client_sends("hi") is None and not other.closed
    assert m.stats.limited_rate == 1
    await m.shutdown()


def test_a_bucket_refills_with_time() -> None:
    """Tokens come back at the rate, up to the burst."""
    bucket = Bucket(rate=1000, burst=2)
    assert bucket.take() and bucket.take() and not bucket.take()
    bucket.stamp -= 0.01  # 10 ms later: refilled (to the burst, not past it)
    assert bucket.take() and bucket.take() and not bucket.take()


async def test_the_connection_over_the_cap_is_closed_with_4008_and_never_registered() -> None:
    """Cap 2: the third connection is closed with 4008, raises, runs no hook."""
    m = manager(max_connections_per_user=2)
    opened: list[str] = []
    m.on_connect(lambda user, ws: opened.append(user))
    first, second, third = sock(), sock(), sock()
    await m.connect("u", first)
    await m.connect("u", second)
    with pytest.raises(TooManyConnectionsError) as caught:
        await m.connect("u", third)
    assert caught.value.user_id == "u" and caught.value.limit == 2
    assert third.accepted and third.close_code == 4008
    assert third.close_reason == "Too many connections"
    assert opened == ["u", "u"] and len(m.get_user_connections("u")) == 2
    await m.disconnect("u", first)
    await m.connect("u", sock())  # a slot is free again
    assert m.stats.limited_connections == 1
    await m.shutdown()


async def test_concurrent_connections_of_one_user_respect_the_cap() -> None:
    """Ten at once with a cap of 3 (accepts in flight count): exactly 3 stay."""
    m = manager(max_connections_per_user=3)
    socks = [sock() for _ in range(10)]
    results = await asyncio.gather(*(m.connect("u", s) for s in socks), return_exceptions=True)
    assert sum(isinstance(r, str) for r in results) == 3
    assert sum(isinstance(r, TooManyConnectionsError) for r in results) == 7
    assert len(m.get_user_connections("u")) == 3
    await m.shutdown()


async def test_under_the_newest_policy_the_oldest_connection_is_replaced() -> None:
    """Cap 2, policy "newest": the third connection opens, and the first (the
    oldest) is closed with 4409 and leaves presence; nothing raises."""
    m = manager(max_connections_per_user=2, cap_policy="newest")
    closed: list[object] = []
    m.on_disconnect(lambda user, ws: closed.append(ws))
    first, second, third = sock(), sock(), sock()
    for s in (first, second, third):
        await m.connect("u", s)
    assert await first.wait_closed() == 4409
    assert first.close_reason == "replaced by a newer connection"
    assert not second.closed and not third.closed
    async with asyncio.timeout(timeout(2)):
        while not closed:
            await asyncio.sleep(0)  # the hooks run after the close
    assert closed == [first]
    assert len(m.get_user_connections("u")) == 2
    assert m.stats.limited_connections == 0
    await m.shutdown()


async def test_concurrent_connections_under_the_newest_policy_keep_the_cap() -> None:
    """Ten at once with a cap of 3, policy "newest": every connect returns, and
    three connections remain open."""
    m = manager(max_connections_per_user=3, cap_policy="newest")
    socks = [sock() for _ in range(10)]
    results = await asyncio.gather(*(m.connect("u", s) for s in socks))
    assert all(isinstance(r, str) for r in results)
    async with asyncio.timeout(timeout(2)):
        while len(m.get_user_connections("u")) != 3:
            await asyncio.sleep(0)  # the replaced ones finish closing
    assert sum(s.close_code == 4409 for s in socks) == 7
    await m.shutdown()


async def test_drain_closes_in_batches_and_refuses_new_connections() -> None:
    """Batch 3 every 0.05 s: 10 sockets close in four groups with 1001, after the
    notice; a connection during the drain is closed with 1001 and raises."""
    from svc_infra.websocket import ServerDrainingError

    m = manager(drain_batch=3, drain_interval=0.05, drain_notice='{"bye":1}')
    closed_at: dict[int, float] = {}
    socks = [sock() for _ in range(10)]
    for i, s in enumerate(socks):
        await m.connect(f"u{i}", s)
    m.on_disconnect(lambda user, ws: closed_at.setdefault(id(ws), time.monotonic()))
    draining = asyncio.create_task(m.drain())
    await asyncio.sleep(0.01)
    late = sock()
    with pytest.raises(ServerDrainingError):
        await m.connect("late", late)
    assert late.close_code == 1001
    await asyncio.wait_for(draining, timeout(5))
    assert [s.close_code for s in socks] == [1001] * 10
    assert all(s.sent[-1] == '{"bye":1}' for s in socks)
    times = sorted(closed_at.values())
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert sum(g >= 0.03 for g in gaps) == 3  # four batches: three waits between them
    await m.shutdown()
    await m.connect("again", sock())  # after shutdown the manager takes sockets again
    await m.shutdown()
