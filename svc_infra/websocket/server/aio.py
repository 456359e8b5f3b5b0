"""Two asyncio helpers of the core: starting a coroutine eagerly, and cancelling for sure."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterable
from typing import Any

from ._compat_asyncio import release

__all__ = ["cancel_and_wait", "resume", "start_eagerly"]


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait until they end.

    A cancellation can be swallowed inside redis-py: on Python 3.11 an
    ``asyncio.timeout`` expiring at the same moment turns it into a
    TimeoutError, which a receive loop retries. So cancel again until done.
    """
    pending = set(tasks)
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.5)


def start_eagerly(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
    """Run ``coro`` now, until it first has to wait; return a task for the rest.

    Most socket writes complete without waiting (the kernel takes the bytes), so
    the frame goes out within the fan-out loop and no task is created: a task per
    frame per connection was the largest cost of a broadcast. Only a write that
    must wait (a full buffer) gets a task, which resumes the coroutine where it
    stopped. Python 3.12's eager tasks (``Task(..., eager_start=True)``) do the
    same, but build a Task for every write, finished or not: about twice the
    cost of running a write that completes (``docs/development.md``).

    Returns:
        None if ``coro`` finished, else the task that finishes it.
    """
    try:
        awaited = coro.send(None)
    except StopIteration:
        return None
    return asyncio.get_running_loop().create_task(resume(coro, awaited))


async def resume(coro: Coroutine[Any, Any, None], awaited: Any) -> None:
    """Drive ``coro`` from where it first waited (it yielded ``awaited``), as a Task
    would; what it raises is raised here."""
    while True:
        try:
            if isinstance(awaited, asyncio.Future):
                release(awaited)
                await _done(awaited)
            else:  # a bare yield, as in asyncio.sleep(0)
                await asyncio.sleep(0)
        except asyncio.CancelledError as exc:
            # Cancelling this task cancels what the coroutine waits for, and
            # delivers the cancellation into it, like Task.cancel().
            if isinstance(awaited, asyncio.Future):
                awaited.cancel()
            try:
                awaited = coro.throw(exc)
            except StopIteration:
                return  # the coroutine swallowed the cancellation
            continue  # (a CancelledError it re-raises propagates: the task is cancelled)
        try:
            awaited = coro.send(None)
        except StopIteration:
            return


async def _done(future: asyncio.Future[Any]) -> None:
    """Wait until ``future`` is done, without raising its exception here."""
    if not future.done():
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def wake(_: asyncio.Future[Any]) -> None:
            if not waiter.done():
                waiter.set_result(None)

        future.add_done_callback(wake)
        try:
            await waiter
        finally:
            future.remove_done_callback(wake)
