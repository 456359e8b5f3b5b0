"""The transactional outbox on SQLite (pytest-django's test database): the write side
in the caller's transaction, and the relay's rounds, failures and duplicates."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import InMemoryChannelLayer
from django.db import connections, transaction

from svc_infra.websocket import ChannelLayerError, ConnectionManager, WebSocketConfig
from svc_infra.websocket.djangoapp import outbox
from svc_infra.websocket.djangoapp.models import OutboxMessage
from svc_infra.websocket.djangoapp.relay import FAILING_AFTER, OutboxRelay
from svc_infra.websocket.testing import MemoryTransport
from tests.support import timeout

pytestmark = pytest.mark.django_db(transaction=True)

_relays: list[OutboxRelay] = []


@pytest.fixture(autouse=True)
async def close_connections() -> AsyncIterator[None]:
    """Close the database connections these tests open in other threads (the
    relays', sync_to_async's): a later test without database access would find
    them open, and Django's close_old_connections (Channels calls it) touch them."""
    yield
    for relay in _relays:
        await relay.close()
    _relays.clear()
    await sync_to_async(connections.close_all)()


def new_relay(manager: ConnectionManager) -> OutboxRelay:
    relay = OutboxRelay(manager)
    _relays.append(relay)
    return relay


class RollbackError(Exception):
    pass


def manager(layer: Any = None, **overrides: Any) -> ConnectionManager:
    config = WebSocketConfig(close_timeout=1, relay_poll_interval=0.05, **overrides)
    return ConnectionManager(layer or InMemoryChannelLayer(), config=config)


def sock() -> MemoryTransport:
    return MemoryTransport(timeout=timeout(5))


def pending() -> list[OutboxMessage]:
    return list(OutboxMessage.objects.filter(sent__isnull=True).order_by("id"))


def test_a_rolled_back_transaction_leaves_nothing_a_committed_one_one_row() -> None:
    with pytest.raises(RollbackError), transaction.atomic():
        outbox.send_to_user(42, {"n": 0})
        raise RollbackError
    assert OutboxMessage.objects.count() == 0
    with transaction.atomic():
        row_id = outbox.send_to_user(42, {"n": 1})
        outbox.broadcast_to_room("lobby", "hello", exclude_user="7")
        outbox.broadcast(b"\x00\x01")
    rows = pending()
    assert rows[0].id == row_id
    assert [(r.kind, r.target, r.exclude) for r in rows] == [
        ("user", "42", None),
        ("room", "lobby", "7"),
        ("all", "", None),
    ]
    assert rows[0].text == '{"n":1}' and rows[1].text == "hello"
    assert bytes(rows[2].data or b"") == b"\x00\x01" and rows[2].text is None
    assert len({r.message_id for r in rows}) == 3


def test_a_message_that_cannot_be_carried_raises_at_the_call_inside_the_transaction() -> None:
    with pytest.raises(TypeError, match="set"), transaction.atomic():
        outbox.send_to_user("u", {"ok": 1})
        outbox.send_to_user("u", {"bad": {1, 2}})
    assert OutboxMessage.objects.count() == 0  # the whole transaction rolled back
    with pytest.raises(TypeError):
        outbox.broadcast_to_room(5, {})  # type: ignore[arg-type]


async def test_the_async_twins_write_in_the_callers_thread() -> None:
    await outbox.asend_to_user("u", {"n": 1})
    await outbox.abroadcast_to_room("r", {"n": 2})
    await outbox.abroadcast({"n": 3}, exclude_user="u")
    kinds = await sync_to_async(lambda: [r.kind for r in pending()])()
    assert kinds == ["user", "room", "all"]


async def test_the_relay_publishes_committed_rows_once_in_order() -> None:
    m = manager()
    s = sock()
    await m.connect("u", s)
    await m.join_room("u", "lobby")
    for n in range(3):
        await outbox.asend_to_user("u", {"n": n})
    await outbox.abroadcast_to_room("lobby", {"room": 1})
    relay = new_relay(m)
    assert await relay.relay_once() == 4
    assert [await s.next_json() for _ in range(4)] == [{"n": 0}, {"n": 1}, {"n": 2}, {"room": 1}]
    assert await relay.relay_once() == 0
    assert await sync_to_async(pending)() == []
    await relay.housekeeping()
    assert relay.stats.pending == 0 and relay.stats.published == 4
    await m.shutdown()


async def test_a_row_published_twice_reaches_each_socket_once_without_history() -> None:
    """The relay died after publishing, before marking (the rows stay pending): the
    next round publishes them again, and the managers drop the copies by id, in
    the relay's process and in the socket's."""
    layer = InMemoryChannelLayer()
    here, relay_side = manager(layer), manager(layer)
    s = sock()
    await here.connect("u", s)
    await relay_side.start()
    for n in range(3):
        await outbox.asend_to_user("u", {"n": n})
    relay = new_relay(relay_side)
    rows = await relay._db(relay._claim)
    for row in rows:  # published, then the process "dies": no _finish, no commit
        await relay_side.ops.send_once(row.kind, row.target, row.frame, row.message_id)
    await relay._db(lambda: relay._finish([], []))  # (rolls nothing back: nothing marked)
    assert len(await sync_to_async(pending)()) == 3
    assert await relay.relay_once() == 3  # the next round: the same ids again
    got = [await s.next_json() for _ in range(3)]
    await relay_side.send_to_user("u", {"marker": 1})
    assert await s.next_json() == {"marker": 1}  # nothing came twice before it
    assert got == [{"n": 0}, {"n": 1}, {"n": 2}]
    await here.shutdown()
    await relay_side.shutdown()


async def test_with_history_a_retried_id_keeps_its_first_offset() -> None:
    m = manager(history_size=10)
    await m.start()
    for n in range(2):
        await outbox.asend_to_user("u", {"n": n})
    relay = new_relay(m)
    rows = await relay._db(relay._claim)
    await relay._db(lambda: relay._finish([], []))
    store = m._recovery.store
    assert store is not None
    first = await store.append("user:u", rows[0].frame, None, 10, 60, rows[0].message_id)
    again = await store.append("user:u", rows[0].frame, None, 10, 60, rows[0].message_id)
    assert first[2] is True and again == (first[0], first[1], False)
    await m.shutdown()


async def test_a_failing_layer_keeps_the_rows_counts_and_retries_in_order() -> None:
    class Down(InMemoryChannelLayer):  # type: ignore[misc]
        down = True

        async def group_send(self, group: str, message: dict[str, Any]) -> None:
            if self.down:
                raise ConnectionError("layer down")
            await super().group_send(group, message)

    layer = Down()
    here, relay_side = manager(layer), manager(layer)
    s = sock()
    await here.connect("u", s)
    for n in range(3):
        await outbox.asend_to_user("u", {"n": n})
    relay = new_relay(relay_side)
    for _ in range(FAILING_AFTER):
        with pytest.raises(ChannelLayerError):
            await relay.relay_once()
    rows = await sync_to_async(pending)()
    assert len(rows) == 3 and rows[0].attempts == FAILING_AFTER
    assert "layer down" in rows[0].last_error and rows[1].attempts == 0
    await relay.housekeeping()
    assert relay.stats.failing == 1 and relay.stats.retried == FAILING_AFTER
    layer.down = False
    stop = asyncio.Event()
    running = asyncio.create_task(relay.run(stop))
    assert [await s.next_json() for _ in range(3)] == [{"n": 0}, {"n": 1}, {"n": 2}]
    stop.set()
    await asyncio.wait_for(running, timeout(5))
    assert await sync_to_async(pending)() == []
    await here.shutdown()
    await relay_side.shutdown()


async def test_targets_are_published_concurrently_each_in_order_and_fail_alone() -> None:
    """A round publishes different targets' rows at once (a send to "slow" waits
    until one to "fast" has gone out), each target's in id order; a target whose
    publication fails keeps its later rows and does not stop the others."""

    class Layer(InMemoryChannelLayer):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.fast_sent = asyncio.Event()

        async def group_send(self, group: str, message: dict[str, Any]) -> None:
            if "bad" in group:
                raise ConnectionError("bad is away")
            if "slow" in group:
                await asyncio.wait_for(self.fast_sent.wait(), timeout(5))
            await super().group_send(group, message)
            if "fast" in group:
                self.fast_sent.set()

    layer = Layer()
    here, relay_side = manager(layer), manager(layer)
    slow, fast = sock(), sock()
    await here.connect("slow", slow)
    await here.connect("fast", fast)
    for n in range(3):
        for user in ("slow", "bad", "fast"):
            await outbox.asend_to_user(user, {"n": n})
    relay = new_relay(relay_side)
    with pytest.raises(ChannelLayerError):
        await relay.relay_once()
    assert [await slow.next_json() for _ in range(3)] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert [await fast.next_json() for _ in range(3)] == [{"n": 0}, {"n": 1}, {"n": 2}]
    rows = await sync_to_async(pending)()
    assert [(r.target, r.attempts) for r in rows] == [("bad", 1), ("bad", 0), ("bad", 0)]
    assert relay.stats.published == 6 and relay.stats.retried == 1
    await here.shutdown()
    await relay_side.shutdown()


async def test_sent_rows_are_deleted_after_the_retention() -> None:
    m = manager(relay_retention=0)
    await outbox.asend_to_user("u", {"n": 1})
    relay = new_relay(m)
    assert await relay.relay_once() == 1
    await relay.housekeeping()
    assert relay.stats.deleted == 1
    assert await sync_to_async(OutboxMessage.objects.count)() == 0
    await m.shutdown()


async def test_run_wakes_on_the_poll_interval_and_stops_on_request() -> None:
    m = manager()
    s = sock()
    await m.connect("u", s)
    relay = new_relay(m)
    stop = asyncio.Event()
    running = asyncio.create_task(relay.run(stop))
    await outbox.asend_to_user("u", {"late": 1})  # after the relay found nothing
    assert await s.next_json() == {"late": 1}
    stop.set()
    await asyncio.wait_for(running, timeout(5))
    await m.shutdown()


async def test_the_relay_metrics() -> None:
    from prometheus_client import CollectorRegistry

    from svc_infra.websocket.djangoapp.outbox_metrics import RelayMetrics

    registry = CollectorRegistry()
    m = manager()
    relay = new_relay(m)
    RelayMetrics(relay, registry)
    for n in range(3):
        await outbox.asend_to_user("u", {"n": n})
    await relay.housekeeping()
    assert registry.get_sample_value("svc_infra_ws_outbox_pending") == 3
    assert registry.get_sample_value("svc_infra_ws_outbox_oldest_pending_seconds") >= 0
    assert await relay.relay_once() == 3
    assert registry.get_sample_value("svc_infra_ws_outbox_published_total") == 3
    await relay.housekeeping()
    assert registry.get_sample_value("svc_infra_ws_outbox_pending") == 0
    assert registry.get_sample_value("svc_infra_ws_outbox_retried_total") == 0
    await m.shutdown()
