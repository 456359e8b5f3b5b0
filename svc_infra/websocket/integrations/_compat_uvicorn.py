"""The one place that reaches into uvicorn's WebSocket protocol: a broadcast's frame
encoded once, written to each idle socket directly.

Through ASGI, every delivery is one ``send`` coroutine in the server, which builds
a ``websockets`` frame, serializes it, and writes it: for a broadcast to 10,000
sockets the same bytes are built 10,000 times (``websockets.broadcast()`` and Node
build them once). Under uvicorn's ``websockets-sansio`` implementation (what its
``--ws auto`` picks since 0.50) a server frame's bytes depend only on the payload
while the connection has no extension (no permessage-deflate: server frames are
not masked), so :class:`DirectWriter` writes the bytes of :func:`encode` (built
once per frame object) to the socket's asyncio transport itself, exactly when
uvicorn's ``send`` would have written them at once:

- the handshake is done, no close was sent, the client is connected, and no HTTP
  response replaced the handshake;
- the transport is writable (uvicorn's ``writable`` event: not paused by flow
  control) and not closing;
- the ``websockets`` protocol is OPEN, with no extension and no fragmented message
  in progress.

Otherwise it returns False and the frame takes the ASGI ``send`` (which waits,
fails or compresses as before). Nothing else changes: uvicorn writes every byte it
produces (``data_to_send()``) right after producing it, so frames written here
keep their order with its pings, pongs and closes.

Anything that does not look exactly like this (another server, another uvicorn
implementation, a renamed attribute) gets no writer.
``tests/websocket/integrations/test_compat_uvicorn.py`` pins it on the installed
uvicorn and ``websockets``, so a release that changes it fails our CI, not a
user's deploy.
"""

from __future__ import annotations

from typing import Any

from websockets.frames import Frame as WireFrame
from websockets.frames import Opcode
from websockets.protocol import OPEN

from ..layer_messages import Frame

__all__ = ["DirectWriter", "direct_writer", "encode"]

_SANSIO = ("uvicorn.protocols.websockets.websockets_sansio_impl", "WebSocketsSansIOProtocol")
_ATTRIBUTES = (
    "writable",
    "disconnected",
    "handshake_complete",
    "close_sent",
    "initial_response",
    "conn",
    "transport",
)

# The last frame encoded and its bytes: a fan-out writes one frame object to every
# connection in turn.
_last: tuple[Frame, bytes] = ("", b"\x81\x00")


def encode(frame: Frame) -> bytes:
    """The bytes of ``frame`` as a server sends it without extensions (built once
    for a run of calls with the same frame object)."""
    global _last
    last, data = _last
    if frame is not last:
        if isinstance(frame, str):
            wire = WireFrame(Opcode.TEXT, frame.encode())
        else:
            wire = WireFrame(Opcode.BINARY, bytes(frame))
        data = wire.serialize(mask=False, extensions=[])
        _last = (frame, data)
    return data


class DirectWriter:
    """Writes frames to one uvicorn ``websockets-sansio`` connection's transport
    (see the module for when)."""

    __slots__ = ("protocol",)

    def __init__(self, protocol: Any) -> None:
        self.protocol = protocol

    def write(self, frame: Frame) -> bool:
        """Write ``frame`` now if uvicorn's ``send`` would have written it at once;
        False (nothing written) otherwise. Never raises for a socket's state."""
        p = self.protocol
        conn = p.conn
        if (
            p.disconnected
            or p.close_sent
            or not p.handshake_complete
            or p.initial_response is not None
            or not p.writable.is_set()
            or conn.state is not OPEN
            or conn.extensions
            or conn.expect_continuation_frame
            or p.transport.is_closing()
        ):
            return False
        p.transport.write(encode(frame))
        return True


def direct_writer(send: Any) -> DirectWriter | None:
    """A :class:`DirectWriter` for the connection whose ASGI ``send`` is ``send``,
    if it is uvicorn's ``websockets-sansio`` protocol's own ``send``; else None."""
    protocol = getattr(send, "__self__", None)
    if protocol is None:
        return None
    cls = type(protocol)
    if (cls.__module__, cls.__name__) != _SANSIO:
        return None
    if getattr(send, "__func__", None) is not getattr(cls, "send", None):
        return None
    if not all(hasattr(protocol, name) for name in _ATTRIBUTES):
        return None
    conn = protocol.conn
    if not all(
        hasattr(conn, name) for name in ("state", "extensions", "expect_continuation_frame")
    ):
        return None
    return DirectWriter(protocol)
