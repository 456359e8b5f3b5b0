"""Tests of the per-connection outbox and its eager start."""

from __future__ import annotations

import asyncio

import pytest

from svc_infra.websocket.server.aio import start_eagerly
from tests.support import timeout


async def test_a_coroutine_that_never_waits_needs_no_task() -> None:
    """A coroutine that completes at once runs inline; no task is created."""
    ran: list[int] = []

    async def quick() -> None:
        ran.append(1)

    assert start_eagerly(quick()) is None
    assert ran == [1]


async def test_a_coroutine_that_waits_is_finished_by_a_task() -> None:
    """The part after the first wait runs in a task, with the awaited result."""
    gate: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    steps: list[str] = []

    async def waits() -> None:
        steps.append("before")
        steps.append(await gate)
        await asyncio.sleep(0)  # a bare yield too
        steps.append("after")

    task = start_eagerly(waits())
    assert task is not None
    assert steps == ["before"]
    gate.set_result("value")
    async with asyncio.timeout(timeout()):
        await task
    assert steps == ["before", "value", "after"]


async def test_exceptions_of_awaited_futures_reach_the_coroutine() -> None:
    """A failed future raises inside the coroutine, where it can be handled."""
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    caught: list[BaseException] = []

    async def waits() -> None:
        try:
            await gate
        except OSError as exc:
            caught.append(exc)

    task = start_eagerly(waits())
    assert task is not None
    gate.set_exception(OSError("reset"))
    async with asyncio.timeout(timeout()):
        await task
    assert [str(e) for e in caught] == ["reset"]


async def test_cancelling_the_task_cancels_the_coroutine() -> None:
    """Cancelling the task delivers CancelledError into the coroutine and its wait."""
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    cleaned: list[str] = []

    async def waits() -> None:
        try:
            await gate
        finally:
            cleaned.append("finally")

    task = start_eagerly(waits())
    assert task is not None
    await asyncio.sleep(0)
    task.cancel()
    async with asyncio.timeout(timeout()):
        with pytest.raises(asyncio.CancelledError):
            await task
    assert cleaned == ["finally"]
    assert gate.cancelled()
