"""Recovery: the ``svc-infra.v1`` wire protocol, per-connection sessions, and replays.

A connection that offered the ``svc-infra.v1`` subprotocol has a :class:`Session`.
Every frame it gets is ``<header JSON>\\n<payload>`` (``docs/recovery.md``): the
header names the stream, and its offset and epoch when the message was recorded;
the payload is the message exactly as a plain connection gets it.

Replays never deliver a silent gap and never a duplicate: while a stream is being
replayed, live frames of that stream are held; then the replay goes out, then the
held frames whose offset is newer. A session drops any frame at or below the last
offset it delivered on a stream.

A position the client claimed is always answered: with a replay, with an explicit
``recovered: false``, or, when history cannot be read at all (its store stopped or
failing), by closing the connection with 1013 before any frame of that stream, so
the client comes back with its positions intact. It is never answered "nothing to
recover" (``null``) and then sent live frames that would move it past a gap.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import Sequence
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
    "BEARER",
    "BROADCAST_STREAM",
    "RECOVER_PARAM",
    "HistoryUnavailableError",
    "SUBPROTOCOL",
    "Recovery",
    "Session",
    "chosen_subprotocol",
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


#: The subprotocol a browser's token travels in (it must be echoed to be accepted).
BEARER = "bearer"


def chosen_subprotocol(offered: Sequence[str]) -> str | None:
    """What the manager selects from a client's offer: ``svc-infra.v1`` (stream
    headers and recovery), else ``bearer``, else none."""
    return next((p for p in (SUBPROTOCOL, BEARER) if p in offered), None)


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


class HistoryUnavailableError(ChannelLayerError):
    """History cannot be read for a position a client claimed (its store is not
    started, stopped, or failing): the connection is closed with 1013 instead of
    being answered, so the client retries with its positions."""

    def __init__(self, stream: str, cause: BaseException | None = None) -> None:
        super().__init__("history", cause)
        self.stream = stream


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
        #: Reconnects that claimed positions: recovered, unrecovered, or deferred
        #: (closed with 1013: history could not be read).
        self.results: dict[str, int] = {"recovered": 0, "unrecovered": 0, "deferred": 0}

    async def record(
        self, stream: str, frame: Frame, exclude: str | None, message_id: str | None = None
    ) -> tuple[int, str, bool] | None:
        """Give ``frame`` the next offset of ``stream``, if the stream keeps history:
        (offset, epoch, True); (offset, epoch, False) if ``message_id`` was recorded
        before (the offset it got then).

        Raises:
            ChannelLayerError: If the history store failed, or is not there (the
                manager stopped): nothing was sent. A message sent without its
                offset would be missing from every later replay.
        """
        rule = self.policy.of(stream)
        if rule is None:
            return None
        store = self.store
        if store is None:
            raise ChannelLayerError("history", None)
        try:
            return await store.append(stream, frame, exclude, *rule, message_id)
        except Exception as exc:
            raise ChannelLayerError("history", exc) from exc

    async def begin(self, conn: LocalConnection) -> None:
        """A v1 connection was registered: replay what it missed, send the first
        control frame, then let live frames through.

        Never raises. If history cannot be read for a position the client claimed
        (the store is not started, stopped, or failing), nothing is sent: the
        connection is closed with 1013 and the client retries with its positions.
        """
        session = conn.session
        assert session is not None
        session.on_gap = lambda stream: self._on_gap(conn, stream)
        user = conn.user_id
        away_rooms = {room_stream(r) for r in self.registry.rooms_of(user)}
        recovering = bool(session.claimed)  # a client back, not a new one
        replays: dict[str, Replay] = {}
        seen: set[str] = set()
        # Until the control frame is out, every live frame is held, and a room the
        # user joins meanwhile (another connection's join) is replayed here, not by
        # replay_room: so the streams are read again after each await, until none
        # is new. The last look and the release below have no await between them.
        while todo := [s for s in self._streams_of(user) if s not in seen]:
            seen.update(todo)
            for stream in todo:
                position = session.claimed.pop(stream, None)
                try:
                    replay = await self._replay(stream, position)
                except HistoryUnavailableError as exc:
                    self._defer(conn, exc)
                    return
                if replay is None:
                    continue  # keeps no history, and the client claimed nothing
                if (
                    recovering
                    and position is None
                    and stream in away_rooms
                    and replay.recovered is None
                ):
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

    def _streams_of(self, user: str) -> list[str]:
        return [
            user_stream(user),
            BROADCAST_STREAM,
            *map(room_stream, self.registry.rooms_of(user)),
        ]

    def hold_room(self, user: str, room: str) -> list[LocalConnection]:
        """The user joins ``room`` here: hold the room's live frames on the user's v1
        connections until :meth:`replay_room` (call before the membership changes).

        Connections still in :meth:`begin` are left out: everything is held for
        them, and begin replays the room itself, before its control frame (a
        replay sent here would go out ahead of it)."""
        stream = room_stream(room)
        # Held even while the store is away: the replay then closes the connection
        # (1013) rather than let live frames pass a position it could not honour.
        if self.policy.of(stream) is None:
            return []
        conns = [
            c
            for c in self.registry.user_connections(user)
            if c.session is not None and not c.session.hold_all
        ]
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
            try:
                replay = await self._replay(stream, session.claimed.pop(stream, None))
            except HistoryUnavailableError as exc:
                self._defer(conn, exc)
                continue
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
        try:
            replay = await self._replay(stream, (last[0], last[1]))
        except HistoryUnavailableError as exc:
            self._defer(conn, exc)
            return
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
        """What ``stream`` holds after ``position``; None if it keeps no history and
        the client claimed nothing there.

        Raises:
            HistoryUnavailableError: If the client claimed a position and history cannot
                be read (no store: the manager is not started or stopped; or the
                store failed).
        """
        rule = self.policy.of(stream)
        if rule is None:
            # A position in a stream that keeps no history here (the policy changed
            # across a restart, or differs between processes): say so.
            return None if position is None else Replay(False, "", 0)
        store = self.store
        if store is None:
            raise HistoryUnavailableError(stream)
        try:
            return await store.since(stream, position, *rule)
        except Exception as exc:
            logger.warning("history of %r could not be read: %r", stream, exc)
            if position is not None:
                raise HistoryUnavailableError(stream, exc) from exc
            return Replay(None, "", 0)  # a new client: nothing to honour

    def _defer(self, conn: LocalConnection, exc: HistoryUnavailableError) -> None:
        """Close ``conn`` with 1013 (history unavailable); its client keeps the
        positions it claimed and recovers on its next connection."""
        if not conn.closed:
            self.results["deferred"] += 1
            logger.info(
                "closing connection %s of %r: history of %r unavailable",
                conn.id,
                conn.user_id,
                exc.stream,
            )
        conn.fail(exc)

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
