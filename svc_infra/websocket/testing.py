"""Test helpers that ship with the package, like ``channels.testing``.

:class:`MemoryTransport` is an in-memory socket for the
:class:`~svc_infra.websocket.ConnectionManager`: it records what is sent and how it
was closed, and can be made slow (sends wait) or broken (sends raise)::

    manager = ConnectionManager(InMemoryChannelLayer())
    ws = MemoryTransport()
    await manager.connect("alice", ws)
    await manager.send_to_user("alice", {"hi": 1})
    assert await ws.next_json() == {"hi": 1}
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .layer_messages import Frame

__all__ = ["MemoryTransport"]


class MemoryTransport:
    """A socket held in memory, for tests.

    Args:
        subprotocols: What the fake client offers.
        query_string: The handshake's query string.
        scope: The handshake's scope (``{"principal": ...}`` for expiry tests).
        timeout: Bound, in seconds, of every wait in :meth:`next` and friends.
    """

    def __init__(
        self,
        subprotocols: Sequence[str] = (),
        *,
        timeout: float = 5.0,
        query_string: bytes = b"",
        scope: dict[str, Any] | None = None,
    ) -> None:
        self.sent: list[Frame] = []
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.accepted_subprotocol: str | None = None
        self._accepted = False
        self._offered = list(subprotocols)
        #: The handshake's query string (a v1 client's positions travel there).
        self.query_string = query_string
        #: The handshake's ASGI scope, as far as a test needs one (``principal``).
        self.scope: dict[str, Any] = dict(scope or {})
        #: The manager's inbound check, installed by :meth:`guard_inbound`.
        self.inbound_check: Callable[[Mapping[str, Any]], Any] | None = None
        self._timeout = timeout
        self._read = 0
        self._changed = asyncio.Event()
        self._open = asyncio.Event()
        self._open.set()
        self.fail_with: BaseException | None = None

    # --- Transport -----------------------------------------------------------------

    @property
    def accepted(self) -> bool:
        return self._accepted

    @property
    def subprotocols(self) -> list[str]:
        return self._offered

    async def accept(self, subprotocol: str | None = None) -> None:
        self._accepted = True
        self.accepted_subprotocol = subprotocol

    async def send(self, frame: Frame) -> None:
        await self._open.wait()
        if self.fail_with is not None:
            raise self.fail_with
        if self.close_code is not None:
            raise RuntimeError("send on a closed MemoryTransport")
        self.sent.append(frame)
        self._changed.set()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self.close_code is None:
            self.close_code = code
            self.close_reason = reason
            self._changed.set()

    def guard_inbound(self, check: Callable[[Mapping[str, Any]], Any]) -> None:
        self.inbound_check = check

    # --- controls for tests --------------------------------------------------------

    def client_sends(self, data: str | bytes) -> Any:
        """Run the manager's inbound check on a message from the fake client; return
        its verdict (None: let through, else the (code, reason) it closed with)."""
        message = {"type": "websocket.receive", "text" if isinstance(data, str) else "bytes": data}
        return None if self.inbound_check is None else self.inbound_check(message)

    def stall(self) -> None:
        """Make sends wait, like a client that stopped reading."""
        self._open.clear()

    def resume(self) -> None:
        """Let waiting sends complete."""
        self._open.set()

    @property
    def closed(self) -> bool:
        return self.close_code is not None

    async def next(self) -> Frame:
        """The next frame not yet read by :meth:`next`, waiting for it if needed.

        Raises:
            TimeoutError: If none arrives in time.
        """
        async with asyncio.timeout(self._timeout):
            while self._read >= len(self.sent):
                self._changed.clear()
                await self._changed.wait()
        frame = self.sent[self._read]
        self._read += 1
        return frame

    async def next_json(self) -> Any:
        """The next frame, parsed as JSON."""
        return json.loads(await self.next())

    async def wait_closed(self) -> int:
        """Wait until closed; return the close code.

        Raises:
            TimeoutError: If it is not closed in time.
        """
        async with asyncio.timeout(self._timeout):
            while self.close_code is None:
                self._changed.clear()
                await self._changed.wait()
        return self.close_code

    def unread(self) -> list[Frame]:
        """Frames sent but not yet returned by :meth:`next`."""
        return self.sent[self._read :]
