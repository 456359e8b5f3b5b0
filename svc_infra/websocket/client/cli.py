"""Interactive client: ``python -m svc_infra.websocket URL``.

Sends each line read from standard input as a text message and prints each
message received on standard output, one per line (binary messages as
``(binary) <hex>``). Status goes to standard error, so output can be piped.

Exit status:

=====  =====================================================================
0      standard input ended, or the server closed normally (1000/1001)
1      the connection could not be opened (refused, DNS, timeout, bad status)
2      bad command-line arguments or an invalid ``WS_*`` variable
3      the server refused the handshake with 401 or 403
4      the connection closed abnormally, or a message was too large
130    interrupted (Ctrl-C)
=====  =====================================================================
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import threading
from collections.abc import Sequence

from ..exceptions import (
    AuthenticationError,
    ConfigurationError,
    ConnectionClosedError,
    ConnectionFailedError,
    MessageTooLargeError,
)
from ._connection import WebSocketClient
from ._reconnect import websocket_connect

EXIT_OK = 0
EXIT_CONNECT_FAILED = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_CLOSED = 4
EXIT_INTERRUPTED = 130

_EOF = None


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected 'Name: value', got {text!r}")
    return name.strip(), value.strip()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m svc_infra.websocket",
        description="Send stdin lines to a WebSocket server and print what it sends back.",
    )
    parser.add_argument("url", metavar="URL", help="ws:// or wss:// URL")
    parser.add_argument(
        "-H",
        "--header",
        dest="headers",
        action="append",
        type=_header,
        default=[],
        metavar="'Name: value'",
        help="extra handshake header; repeatable",
    )
    parser.add_argument(
        "--subprotocol",
        dest="subprotocols",
        action="append",
        default=[],
        metavar="X",
        help="subprotocol to offer; repeatable",
    )
    parser.add_argument(
        "--reconnect",
        action="store_true",
        help="reconnect with backoff when the connection drops (WS_RECONNECT_* settings)",
    )
    return parser


def _status(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _read_stdin(loop: asyncio.AbstractEventLoop, lines: asyncio.Queue[str | None]) -> None:
    # A daemon thread, because a blocking read of stdin cannot be cancelled and
    # must not keep the process alive after the connection ends.
    try:
        for line in sys.stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line.rstrip("\r\n"))
        loop.call_soon_threadsafe(lines.put_nowait, _EOF)
    except RuntimeError:  # the event loop is closed: the program is exiting
        pass


async def _send_lines(ws: WebSocketClient, lines: asyncio.Queue[str | None]) -> None:
    while (line := await lines.get()) is not _EOF:
        await ws.send(line)


async def _print_messages(ws: WebSocketClient) -> None:
    async for message in ws:
        if isinstance(message, bytes):
            message = f"(binary) {message.hex()}"
        print(message, flush=True)


async def _session(ws: WebSocketClient, lines: asyncio.Queue[str | None]) -> bool:
    """Run one connection. Return True when stdin ended, False when the server closed.

    Raises:
        ConnectionClosedError: If the connection closed abnormally.
        MessageTooLargeError: If a message was too large.
    """
    sender = asyncio.create_task(_send_lines(ws, lines))
    receiver = asyncio.create_task(_print_messages(ws))
    try:
        await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
        if receiver.done():
            receiver.result()  # re-raises an abnormal closure
            return False
        sender.result()  # re-raises a closure seen while sending
        # End of input: close, but keep printing what the server sent before its
        # close frame (replies to the last lines), until the handshake completes.
        await ws.close()
        await receiver
        return True
    finally:
        for task in (sender, receiver):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _run(args: argparse.Namespace) -> int:
    try:
        connector = websocket_connect(
            args.url,
            headers=dict(args.headers),
            subprotocols=args.subprotocols or None,
            auto_reconnect=args.reconnect,
        )
    except ConfigurationError as exc:
        _status(f"Configuration error: {exc}.")
        return EXIT_USAGE
    lines: asyncio.Queue[str | None] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    threading.Thread(target=_read_stdin, args=(loop, lines), daemon=True).start()
    try:
        async for ws in connector:
            extra = f" (subprotocol {ws.subprotocol})" if ws.subprotocol else ""
            _status(f"Connected to {args.url}{extra}.")
            try:
                if await _session(ws, lines):
                    return EXIT_OK
                _status("Connection closed normally.")
            except ConnectionClosedError as exc:
                _status(f"Connection closed: {exc}.")
                if not args.reconnect:
                    return EXIT_CLOSED
            except MessageTooLargeError as exc:
                _status(f"Message too large: {exc}.")
                if not args.reconnect:
                    return EXIT_CLOSED
    except AuthenticationError as exc:
        _status(f"Failed: {exc}.")
        return EXIT_AUTH
    except ConnectionFailedError as exc:
        _status(f"Failed: {exc}.")
        return EXIT_CONNECT_FAILED
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command-line client and return its exit status."""
    args = _parser().parse_args(argv)
    try:
        return asyncio.run(_run(args))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
