"""The client's side of recovery: positions per stream, kept across reconnects."""

from __future__ import annotations

import logging
from collections import deque

from ..wire import SUBPROTOCOL, Positions, split_frame, with_positions

__all__ = ["SUBPROTOCOL", "RecoverySession"]

logger = logging.getLogger("svc_infra.websocket.client")


class RecoverySession:
    """Where this client stands in each stream, and what the last connection recovered."""

    def __init__(self) -> None:
        self.positions: Positions = {}
        self.active = False  # the server selected svc-infra.v1
        self.started = False  # its first control frame arrived
        self.recovered: bool | None = None
        self.unrecovered: list[str] = []
        #: Messages that came before the first control frame: the protocol puts
        #: the control frame first, but a payload whose position was taken must
        #: never be dropped, so they are handed out first.
        self.early: deque[str | bytes] = deque()

    def url(self, base: str) -> str:
        """``base`` with this client's positions in the handshake."""
        return with_positions(base, self.positions)

    def begin(self, active: bool) -> None:
        """A connection opened (with ``svc-infra.v1`` selected or not)."""
        self.active = active
        self.started = False
        self.recovered = None
        self.unrecovered = []
        self.early.clear()

    def unwrap(self, frame: str | bytes) -> str | bytes | None:
        """The payload of a message frame, or None for a control frame (applied here).

        Raises:
            ValueError: If the frame is not a v1 frame.
        """
        header, payload = split_frame(frame)
        kind = header.get("t")
        if kind is None:
            stream, offset, epoch = header.get("s"), header.get("o"), header.get("e")
            if isinstance(stream, str) and isinstance(offset, int) and isinstance(epoch, str):
                self.positions[stream] = (epoch, offset)
            return payload
        if kind == "recovery":
            self.started = True
            self.recovered = header.get("recovered")
            self.unrecovered = [str(s) for s in header.get("unrecovered") or ()]
            for stream, info in (header.get("streams") or {}).items():
                self._place(str(stream), info)
        elif kind == "stream":
            stream = str(header.get("s"))
            self._place(stream, header)
            if header.get("recovered") is False:
                self.recovered = False
                self.unrecovered.append(stream)
        else:
            logger.debug("ignoring a svc-infra.v1 control frame of type %r", kind)
        return None

    def _place(self, stream: str, info: object) -> None:
        if isinstance(info, dict):
            epoch, offset = info.get("e"), info.get("o")
            if isinstance(epoch, str) and epoch and isinstance(offset, int):
                self.positions[stream] = (epoch, offset)
