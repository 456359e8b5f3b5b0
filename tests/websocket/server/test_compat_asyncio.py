"""What _compat_asyncio relies on, pinned on the running Python."""

from __future__ import annotations

import asyncio

import pytest

from svc_infra.websocket.server._compat_asyncio import is_blocking, release


async def test_a_coroutine_awaiting_a_future_yields_it_marked_blocking() -> None:
    future: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def waits() -> int:
        return await future

    coro = waits()
    yielded = coro.send(None)
    assert yielded is future and is_blocking(future)
    release(future)
    assert not is_blocking(future)
    future.set_result(7)
    with pytest.raises(StopIteration) as done:
        coro.send(None)
    assert done.value.value == 7
