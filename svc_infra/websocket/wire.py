"""The ``svc-infra.v1`` wire protocol, shared by the server and the clients.

Specified in ``docs/recovery.md``. In short:

- the client offers the subprotocol ``svc-infra.v1`` (beside ``bearer`` if it sends
  a token that way); the server selects it;
- a reconnecting client sends its positions in the query parameter
  ``svc_recover``: URL-safe base64, unpadded, of ``{"<stream>": ["<epoch>", <offset>]}``;
- every server frame is ``<header JSON> "\\n" <payload>``, text or binary as the
  payload is. A message's header is ``{"s": stream, "o": offset, "e": epoch}``
  (``o``/``e`` only when recorded in history); a control frame's header has
  ``"t"`` (``"recovery"`` first, ``"stream"`` when a stream is added) and no payload.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = [
    "RECOVER_PARAM",
    "SUBPROTOCOL",
    "decode_positions",
    "encode_positions",
    "split_frame",
    "with_positions",
]

#: The subprotocol of stream headers and recovery.
SUBPROTOCOL = "svc-infra.v1"
#: The query parameter that carries a reconnecting client's positions.
RECOVER_PARAM = "svc_recover"

Positions = dict[str, tuple[str, int]]


def encode_positions(positions: Positions) -> str:
    """The ``svc_recover`` value for ``positions``."""
    data = {stream: [epoch, offset] for stream, (epoch, offset) in positions.items()}
    raw = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_positions(value: str) -> Positions:
    """Positions from a ``svc_recover`` value; malformed entries are left out.

    Raises:
        ValueError: If the value is not base64 of a JSON object.
    """
    try:
        data = json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
    except binascii.Error as exc:
        raise ValueError(f"{RECOVER_PARAM} is not base64: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{RECOVER_PARAM} is not a JSON object")
    positions: Positions = {}
    for stream, pos in data.items():
        if (
            isinstance(pos, list)
            and len(pos) == 2
            and isinstance(pos[0], str)
            and isinstance(pos[1], int)
            and not isinstance(pos[1], bool)
        ):
            positions[str(stream)] = (pos[0], pos[1])
    return positions


def with_positions(url: str, positions: Positions) -> str:
    """``url`` with its ``svc_recover`` parameter set to ``positions`` (or removed)."""
    parts = urlsplit(url)
    query = [
        (k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != RECOVER_PARAM
    ]
    if positions:
        query.append((RECOVER_PARAM, encode_positions(positions)))
    return urlunsplit(parts._replace(query=urlencode(query)))


def split_frame(frame: str | bytes) -> tuple[dict[str, Any], str | bytes]:
    """A v1 frame's header and payload.

    Raises:
        ValueError: If the frame has no header line or the header is not a JSON object.
    """
    payload: str | bytes
    if isinstance(frame, str):
        head, sep, payload = frame.partition("\n")
    else:
        raw, bsep, payload = frame.partition(b"\n")
        head, sep = raw.decode(), bsep.decode()
    if not sep:
        raise ValueError("a svc-infra.v1 frame without a header line")
    header = json.loads(head)
    if not isinstance(header, dict):
        raise ValueError("a svc-infra.v1 header that is not a JSON object")
    return header, payload
