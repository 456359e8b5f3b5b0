"""The outbox of a connection: writes now when idle, in order when a write must wait."""

from __future__ import annotations

import asyncio

from svc_infra.websocket.models import ConnectionInfo
from svc_infra.websocket.server.connection import LocalConnection
from svc_infra.websocket.testing import MemoryTransport
from tests.support import timeout


def conn(socket: MemoryTransport, failures: list[BaseException | None]) -> LocalConnection:
    return LocalConnection(
        ConnectionInfo("u", "c"), socket, socket, limit=100, failed=lambda c, e: failures.append(e)
    )


async def test_an_idle_connection_writes_at_once_without_an_outbox() -> None:
    """A write that completes leaves no queue and no task behind."""
    socket = MemoryTransport(timeout=timeout(5))
    c = conn(socket, [])
    assert c.push("a") and c.push("b")
    assert socket.sent == ["a", "b"]
    assert c._queue is None and c._drain_task is None


async def test_a_write_that_waits_keeps_later_frames_behind_it_in_order() -> None:
    """The first write waits: it stays counted, the next frames queue behind it."""
    socket = MemoryTransport(timeout=timeout(5))
    socket.stall()
    c = conn(socket, [])
    assert c.push("1") and c.push("2") and c.push("3")
    assert c.queued_frames() == 3 and socket.sent == []
    socket.resume()
    task = c._drain_task
    assert task is not None
    await asyncio.wait_for(task, timeout(5))
    assert socket.sent == ["1", "2", "3"]
    assert c._queue is None and c._drain_task is None and c.queued_frames() == 0


async def test_a_failed_immediate_write_reports_the_connection() -> None:
    """A write that raises at once reports the failure, as a failed drain does."""
    socket = MemoryTransport(timeout=timeout(5))
    socket.fail_with = ConnectionResetError("gone")
    failures: list[BaseException | None] = []
    c = conn(socket, failures)
    assert c.push("x")
    assert len(failures) == 1 and isinstance(failures[0], ConnectionResetError)


async def test_the_outbox_limit_counts_the_write_in_flight() -> None:
    """Limit 100: a waiting 60-character write and a second of 60 overflow."""
    socket = MemoryTransport(timeout=timeout(5))
    socket.stall()
    failures: list[BaseException | None] = []
    c = conn(socket, failures)
    assert c.push("x" * 60)
    assert not c.push("y" * 60)
    assert failures == [None]  # evicted as a slow consumer
    c.stop()
