"""A WebSocket client that only counts frames: a load generator that is not the bottleneck.

With 500 ``websockets`` clients in one process, the client side parses each
frame into a message and runs a coroutine per ``recv()``: at about 100,000
messages/s it saturates a core, and every fast server measures the same. This
client does the opening handshake by hand and then counts text frames from the
bytes as they arrive, in ``data_received``. Servers are compared with the same
client, so ratios stay fair; use ``websockets`` where messages must be read.

Parsing frame headers still costs a Python loop per frame. When every frame has
the same size (a fan-out of one payload), :meth:`FrameCounter.count_bytes` stops
parsing: the client then only adds up byte counts, one addition per ``recv``, and
``wait_for`` turns frames into bytes. That keeps one client core ahead of one
server core, which frame parsing does not quite do for the fastest servers.
"""

from __future__ import annotations

import asyncio
import base64
import os


class FrameCounter(asyncio.Protocol):
    """Counts the text frames a server sends; ``wait_for(n)`` resolves at ``n``."""

    #: Header lines added to the opening handshake (each ending in CRLF).
    extra_headers = ""

    def __init__(self, path: str, host: str) -> None:
        self.path, self.host = path, host
        self.transport: asyncio.Transport | None = None
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.frames = 0
        self._buffer = b""
        self._handshake = True
        self._target = 0
        self._reached: asyncio.Future[None] | None = None
        self.frame_size = 0  # bytes of the last text frame parsed, header included
        self._fixed = 0  # frame size when counting bytes, else 0
        self._bytes = 0

    def count_bytes(self) -> None:
        """From now on, count frames as bytes / :attr:`frame_size` (every frame the
        server sends must have that size)."""
        assert self.frame_size, "no frame parsed yet"
        assert not self._buffer, "a frame is half read"
        self._fixed = self.frame_size
        self._bytes = self.frames * self.frame_size

    @property
    def stray_bytes(self) -> int:
        """When counting bytes: bytes past the last whole frame (0 unless the server
        sent a frame of another size, or a frame is still arriving)."""
        return self._bytes % self._fixed if self._fixed else 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            f"GET {self.path} HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n{self.extra_headers}\r\n".encode()
        )

    def data_received(self, data: bytes) -> None:
        if self._fixed:
            self._bytes += len(data)
            if self._reached is not None and self._bytes >= self._target * self._fixed:
                self.frames = self._bytes // self._fixed
                self._reached.set_result(None)
                self._reached = None
            return
        buffer = self._buffer + data
        if self._handshake:
            head, sep, rest = buffer.partition(b"\r\n\r\n")
            if not sep:
                self._buffer = buffer
                return
            if b" 101 " not in head.split(b"\r\n", 1)[0]:
                self.opened.set_exception(ConnectionError(head.split(b"\r\n", 1)[0].decode()))
                return
            self._handshake = False
            self.handshake_done()
            buffer = rest
        i, n = 0, len(buffer)
        while n - i >= 2:
            length, header = buffer[i + 1] & 0x7F, 2
            if length == 126:
                if n - i < 4:
                    break
                length, header = int.from_bytes(buffer[i + 2 : i + 4], "big"), 4
            elif length == 127:
                if n - i < 10:
                    break
                length, header = int.from_bytes(buffer[i + 2 : i + 10], "big"), 10
            if n - i < header + length:
                break
            if buffer[i] & 0x0F == 1:  # text frames only (FIN set: servers do not fragment)
                self.text_frame(buffer, i + header, length, header)
            i += header + length
        self._buffer = buffer[i:]
        if self._reached is not None and self.frames >= self._target:
            self._reached.set_result(None)
            self._reached = None

    def handshake_done(self) -> None:
        """The server switched protocols: the connection is open."""
        self.opened.set_result(None)

    def text_frame(self, buffer: bytes, start: int, length: int, header: int) -> None:
        """A text frame arrived: its payload is ``buffer[start:start + length]``."""
        self.frames += 1
        self.frame_size = header + length

    def send_text(self, text: str) -> None:
        """Send a masked text frame (the zero mask: clients must mask, any key will do)."""
        payload = text.encode()
        assert len(payload) < 126
        assert self.transport is not None
        self.transport.write(bytes([0x81, 0x80 | len(payload)]) + b"\0\0\0\0" + payload)

    def wait_for(self, frames: int) -> asyncio.Future[None]:
        """A future resolved once ``frames`` text frames have arrived in all."""
        future = asyncio.get_running_loop().create_future()
        if self._fixed:
            self.frames = self._bytes // self._fixed
        if self.frames >= frames:
            future.set_result(None)
        else:
            self._target, self._reached = frames, future
        return future

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class SocketIOCounter(FrameCounter):
    """A :class:`FrameCounter` for Socket.IO servers: Engine.IO v4 on the websocket
    transport alone (``/socket.io/?EIO=4&transport=websocket``), default namespace.

    It answers the open packet (``0{...}``) with a namespace connect (``40``), and
    :attr:`opened` resolves on its ack (``40{...}``). It counts the event frames
    (``42[...]``) and answers a ping (``2``) with a pong (``3``) without counting
    it. :meth:`send_text` sends its text as the event ``go``, the Socket.IO form of
    the control message the plain WebSocket servers take as a text frame.

    After :meth:`count_bytes` no frame is looked at, so the server must send no
    ping (the benchmarks' Socket.IO servers ping every 600 s): a stray frame shows
    in :attr:`stray_bytes`.
    """

    def handshake_done(self) -> None:
        """Open once the namespace's ack arrives (:meth:`text_frame`), not yet."""

    def text_frame(self, buffer: bytes, start: int, length: int, header: int) -> None:
        packet = buffer[start : start + min(length, 2)]
        if packet == b"42":  # an event
            super().text_frame(buffer, start, length, header)
        elif packet == b"2":  # a ping
            FrameCounter.send_text(self, "3")
        elif packet == b"40" and not self.opened.done():  # the namespace's ack
            self.opened.set_result(None)
        elif packet[:1] == b"0":  # the Engine.IO open packet
            FrameCounter.send_text(self, "40")
        elif (packet == b"44" or packet[:1] == b"1") and not self.opened.done():
            # refused, or closed, before the namespace was open
            self.opened.set_exception(ConnectionError(buffer[start : start + length].decode()))

    def send_text(self, text: str) -> None:
        """Send ``text`` as the Socket.IO event ``go`` (a JSON string: no quotes in it)."""
        assert '"' not in text
        assert "\\" not in text
        super().send_text(f'42["go","{text}"]')


async def open_counter(url: str, protocol: type[FrameCounter] = FrameCounter) -> FrameCounter:
    """Connect to ``ws://host:port/path`` and finish the handshake (a
    :class:`SocketIOCounter` also connects to the default namespace).

    Raises:
        ConnectionError: If the server does not switch protocols (or refuses the
            namespace).
    """
    assert url.startswith("ws://")
    hostport, _, path = url[5:].partition("/")
    host, _, port = hostport.partition(":")
    loop = asyncio.get_running_loop()
    _, counter = await loop.create_connection(
        lambda: protocol("/" + path, hostport), host, int(port)
    )
    await counter.opened
    return counter
