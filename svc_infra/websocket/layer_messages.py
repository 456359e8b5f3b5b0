"""The layer messages managers exchange (their whole vocabulary), and payload encoding.

Payloads are encoded once, by the sender: ``dict`` and ``list`` become JSON text,
``str`` stays text, ``bytes`` stay binary. The layer carries the encoded frame and
every receiving process writes it to its sockets as is.

Layer message types (see ``docs/layer-messages.md``)::

    {"type": "ws.send",  "text": str | "bytes": bytes,
     "user": id | "room": name | "all": True, "exclude": id?, "origin": str?,
     "offset": int?, "epoch": str?, "mid": str?}
    {"type": "ws.join",  "user": id, "room": name}
    {"type": "ws.leave", "user": id, "room": name}
    {"type": "ws.leave", "user": id, "rooms": [name], "departed": True}  (no presence)
    {"type": "ws.close", "user": id, "code": int?, "reason": str?, "connection": id?}
    {"type": "ws.rooms", "user": id, "rooms": [name], "v": int}  (or "users": [[id, rooms, v]])
    {"type": "ws.presence", "origin": str, "add": [json]?, "remove": [id]?,
     "reset": bool?, "drop": bool?}

The last two travel only with Redis presence. :data:`TYPES` lists them all; the
router of :mod:`svc_infra.websocket.server` has one handler per type, named after
it as Channels consumers name theirs (``ws.send`` -> ``ws_send``).
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = [
    "CLOSE",
    "JOIN",
    "LEAVE",
    "PRESENCE",
    "ROOMS",
    "SEND",
    "TYPES",
    "handler_name",
    "Frame",
    "encode_payload",
    "frame_of",
    "send_message",
    "utf8_size",
]

SEND = "ws.send"
JOIN = "ws.join"
LEAVE = "ws.leave"
CLOSE = "ws.close"
ROOMS = "ws.rooms"
PRESENCE = "ws.presence"

#: Every layer message type a manager handles.
TYPES = frozenset({SEND, JOIN, LEAVE, CLOSE, ROOMS, PRESENCE})


def handler_name(message_type: str) -> str:
    """The handler method for a message type, as Channels names them: ``ws.send`` -> ``ws_send``."""
    return message_type.replace(".", "_")


Frame = str | bytes

_SCALARS = (str, int, float, bool, type(None))


def _check(value: Any, path: str) -> None:
    # json.dumps would turn int keys into strings and NaN into invalid JSON;
    # msgpack (channels_redis) refuses what JSON refuses. Check once, up front.
    if isinstance(value, _SCALARS):
        if isinstance(value, float) and not math.isfinite(value):
            raise TypeError(f"{path} is {value!r}, which JSON cannot carry")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(
                    f"{path} has a key of type {type(key).__name__} ({key!r}); "
                    "JSON object keys must be str"
                )
            _check(item, f"{path}[{key!r}]")
        return
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check(item, f"{path}[{index}]")
        return
    raise TypeError(
        f"{path} is of type {type(value).__name__}, which cannot be sent as JSON "
        "(use dict, list, str, int, float, bool or None)"
    )


def encode_payload(message: Any) -> Frame:
    """Encode a message for the wire.

    Returns:
        ``str`` for a text frame (JSON for ``dict``/``list``), ``bytes`` for binary.

    Raises:
        TypeError: If the message, or anything inside it, cannot be carried:
            a set, a dict with non-string keys, NaN, an arbitrary object.
    """
    if isinstance(message, str):
        return message
    if isinstance(message, bytes | bytearray | memoryview):
        return bytes(message)
    if isinstance(message, dict | list | tuple):
        _check(message, "message")
        return json.dumps(message, separators=(",", ":"), ensure_ascii=False)
    raise TypeError(
        f"cannot send a message of type {type(message).__name__}: "
        "use dict or list (JSON), str (text) or bytes (binary)"
    )


def send_message(frame: Frame, **fields: Any) -> dict[str, Any]:
    """Build a ``ws.send`` layer message carrying ``frame``."""
    key = "text" if isinstance(frame, str) else "bytes"
    message: dict[str, Any] = {"type": SEND, key: frame}
    message.update((k, v) for k, v in fields.items() if v is not None)
    return message


def frame_of(message: dict[str, Any]) -> Frame | None:
    """The frame a ``ws.send`` layer message carries, or None if it has none."""
    text = message.get("text")
    if isinstance(text, str):
        return text
    data = message.get("bytes")
    if isinstance(data, bytes):
        return data
    return None


def utf8_size(text: str, limit: int) -> int:
    """Size of ``text`` in UTF-8 where it could exceed ``limit``.

    A code point takes 1 to 4 bytes, so a short string is decided by its length
    alone and is not encoded (the socket encodes it again to send).
    """
    if len(text) * 4 <= limit:
        return len(text)  # a lower bound, and it cannot exceed the limit
    return len(text.encode())
