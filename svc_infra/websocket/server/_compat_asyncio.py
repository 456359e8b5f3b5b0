"""The one place that touches asyncio's private Future protocol.

:func:`~svc_infra.websocket.server.aio.start_eagerly` runs a socket write inline
and, only if it must wait, drives the rest of the coroutine itself (a Task per
write would cost more than the write). A coroutine that awaits an asyncio Future
yields that Future with ``_asyncio_future_blocking`` set to True; whoever drives
the coroutine must clear it before waiting on the Future, as ``Task.__step`` does.
``tests/websocket/server/test_compat_asyncio.py`` pins this on the running Python.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["is_blocking", "release"]


def is_blocking(future: asyncio.Future[Any]) -> bool:
    """Whether ``future`` was yielded by an ``await`` (a driver must wait on it)."""
    return bool(future._asyncio_future_blocking)


def release(future: asyncio.Future[Any]) -> None:
    """Take over a Future a coroutine yielded: the driver now waits on it."""
    future._asyncio_future_blocking = False
