"""Recovery: the ``svc-infra.v1`` wire protocol, per-connection sessions, and replays.

A connection that offered the ``svc-infra.v1`` subprotocol has a :class:`Session`.
Every frame it gets is ``<header JSON>\\n<payload>`` (``docs/recovery.md``): the
header names the stream, and its offset and epoch when the message was recorded;
the payload is the message exactly as a plain connection gets it.

Replays never deliver a silent gap and never a duplicate: while a stream is being
replayed, live frames of that stream are held; then the replay goes out, then the
held frames whose offset is newer. A session drops any frame at or below the last
offset it delivered on a stream.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from typing import Any

from ..exceptions import ChannelLayerError
from ..layer_messages import Frame
from ..wire import RECOVER_PARAM, SUBPROTOCOL, decode_positions
from ._history import HistoryPolicy, Replay
from ._registry import Registry
from ._session import Session
from .connection import LocalConnection
from .protocols import HistoryStore

__all__ = [
    "BROADCAST_STREAM",
    "RECOVER_PARAM",
    "SUBPROTOCOL",
    "Recovery",
    "Session",
    "parse_positions",
    "room_stream",
    "stream_of",
    "user_stream",
    "v1_frame",
]

logger = logging.getLogger("svc_infra.websocket.manager")

#: Seconds a gap in a stream may wait for its missing frames before they are
#: fetched from history (frames from two processes can overtake each other).
GAP_WAIT = 0.25

BROADCAST_STREAM = "broadcast"


def user_stream(user: str) -> str:
    return f"user:{user}"


def room_stream(room: str) -> str:
    return f"room:{room}"


def stream_of(user: str | None, room: str | None) -> str:
    """The stream of a message for ``user``, ``room`` or (neither) everyone."""
    if user is not None:
        return user_stream(user)
    if room is not None:
        return room_stream(room)
    return BROADCAST_STREAM


def _header(fields: dict[str, Any]) -> str:
    # json.dumps escapes newlines: the header never contains the separator.
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=False)


def v1_frame(stream: str, offset: int | None, epoch: str | None, frame: Frame) -> Frame:
    """The v1 frame of a message: its header, a newline, the payload unchanged."""
    fields: dict[str, Any] = {"s": stream}
    if offset is not None:
        fields["o"] = offset
        fields["e"] = epoch
    header = _header(fields)
    if isinstance(frame, str):
        return f"{header}\n{frame}"
    return header.encode() + b"\n" + frame


def control_frame(fields: dict[str, Any]) -> str:
    """A v1 control frame: a header with ``t``, and no payload."""
    return _header(fields) + "\n"


def parse_positions(query_string: bytes | str) -> dict[str, tuple[str, int]]:
    """The positions a client sent in the ``svc_recover`` query parameter.

    Anything malformed counts as no position: the client is then told where
    each stream stands.
    """
    from urllib.parse import parse_qs

    text = query_string.decode("latin-1") if isinstance(query_string, bytes) else query_string
    values = parse_qs(text).get(RECOVER_PARAM)
    if not values:
        return {}
    try:
        return decode_positions(values[-1])
    except ValueError as exc:
        logger.info("ignoring a malformed %s parameter: %s", RECOVER_PARAM, exc)
        return {}


class Recovery:
    """Records messages in history and replays them to v1 connections.

    Args:
        registry: Whose connections to replay to.
        policy: Which streams keep history.
        store: Where history lives; None when no stream keeps any.
    """

    def __init__(
        self, *, registry: Registry, policy: HistoryPolicy, store: HistoryStore | None
    ) -> None:
        self.registry = registry
        self.policy = policy
        self.store = store
        #: Gap repairs in progress.
        self.tasks: set[asyncio.Task[None]] = set()
        #: Reconnects that claimed positions: {"recovered": n, "unrecovered": n}.
        self.results: dict[str, int] = {"recovered": 0, "unrecovered": 0}

    async def record(
        self, stream: str, frame: Frame, exclude: str | None
    ) -> tuple[int, str] | None:
        """Give ``frame`` the next offset of ``stream``, if the stream keeps history.

        Raises:
            ChannelLayerError: If the history store failed (nothing was sent).
        """
        rule = self.policy.of(stream) if self.store is not None else None
        if rule is None or self.store is None:
            return None
        try:
            return await self.store.append(stream, frame, exclude, *rule)
        except Exception as exc:
            raise ChannelLayerError("history", exc) from exc

    async def begin(self, conn: LocalConnection) -> None:
        """A v1 connection was registered: replay what it missed, send the first
        control frame, then let live frames through. Never raises: a history store
        that fails reports its streams as not recovered."""
        session = conn.session
        assert session is not None
        session.on_gap = lambda stream: self._on_gap(conn, stream)
        user = conn.user_id
        rooms = [room_stream(r) for r in self.registry.rooms_of(user)]
        recovering = bool(session.claimed)  # a client back, not a new one
        replays: dict[str, Replay] = {}
        for stream in [user_stream(user), BROADCAST_STREAM, *rooms]:
            position = session.claimed.pop(stream, None)
            replay = await self._replay(stream, position)
            if replay is None:
                continue
            if recovering and position is None and stream in rooms and replay.recovered is None:
                # A room joined while the client was away (no connection got its
                # position): what it had since the join cannot be told apart from
                # what came before, so the client is told it was not recovered.
                replay = dataclasses.replace(replay, recovered=False)
            replays[stream] = replay
        claimed = [s for s, r in replays.items() if r.recovered is not None]
        unrecovered = [s for s in claimed if replays[s].recovered is False]
        if claimed:
            self.results["unrecovered" if unrecovered else "recovered"] += 1
        summary = {
            "t": "recovery",
            "recovered": None if not claimed else not unrecovered,
            "unrecovered": unrecovered,
            "streams": {s: _position(r) for s, r in replays.items()},
        }
        conn.push(control_frame(summary))
        for stream, replay in replays.items():
            self._deliver(conn, stream, replay)
        session.release(conn, None)

    def hold_room(self, user: str, room: str) -> list[LocalConnection]:
        """The user joins ``room`` here: hold the room's live frames on the user's v1
        connections until :meth:`replay_room` (call before the membership changes)."""
        stream = room_stream(room)
        if self.store is None or self.policy.of(stream) is None:
            return []
        conns = [c for c in self.registry.user_connections(user) if c.session is not None]
        for conn in conns:
            assert conn.session is not None
            conn.session.held_streams.add(stream)
        return conns

    async def replay_room(self, conns: list[LocalConnection], room: str) -> None:
        """Replay ``room`` to ``conns`` from their claimed positions, then release it."""
        stream = room_stream(room)
        for conn in conns:
            session = conn.session
            if session is None or conn.closed:
                continue
            replay = await self._replay(stream, session.claimed.pop(stream, None))
            if replay is not None:
                control = {"t": "stream", "s": stream, **_position(replay)}
                conn.push(control_frame(control))
                self._deliver(conn, stream, replay)
            session.release(conn, [stream])

    def _on_gap(self, conn: LocalConnection, stream: str) -> None:
        task = asyncio.get_running_loop().create_task(self._repair(conn, stream))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _repair(self, conn: LocalConnection, stream: str) -> None:
        """A gap opened in ``stream``: give the missing frames a moment to arrive
        (another process's publish overtaken by a local one), then fetch them from
        history; if history no longer has them, say so and go on after the gap."""
        await asyncio.sleep(GAP_WAIT)
        session = conn.session
        if session is None or conn.closed or stream not in session.pending:
            return
        last = session.last.get(stream)
        if last is None:
            return
        replay = await self._replay(stream, (last[0], last[1]))
        if conn.closed or stream not in session.pending:
            return
        if replay is not None and replay.recovered:
            self._deliver(conn, stream, replay)
        if stream in session.pending:
            logger.warning("a gap in %r could not be filled from history", stream)
            conn.push(
                control_frame(
                    {"t": "stream", "s": stream, "e": last[0], "o": last[1], "recovered": False}
                )
            )
            session.give_up_gap(conn, stream)

    async def _replay(self, stream: str, position: tuple[str, int] | None) -> Replay | None:
        rule = self.policy.of(stream) if self.store is not None else None
        if rule is None or self.store is None:
            return None
        try:
            return await self.store.since(stream, position, *rule)
        except Exception as exc:
            logger.warning("history of %r could not be read: %r", stream, exc)
            return Replay(None if position is None else False, "", 0)

    def _deliver(self, conn: LocalConnection, stream: str, replay: Replay) -> None:
        session = conn.session
        assert session is not None
        user = conn.user_id
        for entry in replay.entries:
            # An entry not for this user only moves its position (offsets stay in order).
            frame = None if entry.exclude == user else _v1(stream, entry, replay)
            session.deliver(conn, stream, entry.offset, replay.epoch, frame)
        # The client now stands at the top, whatever was (or was not) replayed.
        if replay.epoch:
            session.advance(conn, stream, replay.epoch, replay.top)


def _v1(stream: str, entry: Any, replay: Replay) -> Frame:
    return v1_frame(stream, entry.offset, replay.epoch, entry.frame)


def _position(replay: Replay) -> dict[str, Any]:
    return {"e": replay.epoch, "o": replay.top, "recovered": replay.recovered}
