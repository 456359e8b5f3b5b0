"""The :class:`ConnectionManager`: users, their connections and rooms, on a Channels layer.

The manager is a facade. It builds the layer and presence, and composes the parts
of :mod:`svc_infra.websocket.server`, each with one job:

- :class:`~.server._registry.Registry`: connections, users, rooms (pure state);
- :class:`~.server._connections.Connections`: opening and ending connections, hooks;
- :class:`~.server._admission.Admission`: the per-user cap, inbound checks, expiry;
- :class:`~.server._outbound.Outbound`: record, deliver here, publish (every send);
- :class:`~.server._publisher.Publisher`: local fan-out and every layer call;
- :class:`~.server._membership.GroupMembership`: the layer groups of this process;
- :class:`~.server._rooms.Rooms`: room changes, local or through Redis;
- :class:`~.server._router.LayerRouter`: one handler per layer message type;
- presence (:class:`~.scaleout.presence.RedisPresence`) behind
  :class:`~.server.protocols.Presence`.

How delivery works (see ``docs/manager.md``): each manager owns one channel on the
layer. ``send_to_user``, ``broadcast`` and ``broadcast_to_room`` write to this
process's sockets directly, then make ONE ``group_send`` so that other processes
(and any Channels code) do the same for theirs. Payloads are encoded once, by the
sender. Writes go through a bounded outbox per connection.

The module imports neither Django nor Starlette: framework sockets are adapted by
:func:`~.server.transport.adapt`, with adapters the integrations register.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar, cast

from . import layer_messages as lm
from .close_codes import CloseCode
from .config import WebSocketConfig, get_default_config
from .exceptions import ServerDrainingError, TooManyConnectionsError, WebSocketError
from .groups import check_utf8, normalize_prefix, room_group, user_group, user_key
from .models import ConnectionInfo
from .scaleout.backend import LayerBackend
from .scaleout.layers import (
    build_layer,
    capabilities,
    reserve_capacity,
)
from .scaleout.presence import RedisPresence
from .server._admission import Admission
from .server._connections import Connections, check_metadata
from .server._drain import drain, drain_on_signals
from .server._history import HistoryPolicy
from .server._lifecycle import Lifecycle
from .server._limits import InboundLimits
from .server._membership import GroupMembership
from .server._outbound import Outbound
from .server._presence_host import PartsPresenceHost
from .server._publisher import Publisher
from .server._recovery import (
    BROADCAST_STREAM,
    SUBPROTOCOL,
    Recovery,
    parse_positions,
    room_stream,
    user_stream,
)
from .server._registry import Registry
from .server._rooms import Rooms
from .server._router import LayerRouter
from .server._session import Session
from .server.aio import cancel_and_wait
from .server.protocols import Presence
from .server.stats import ManagerStats, PublishTimer
from .server.transport import adapt

__all__ = [
    "ConnectionManager",
    "ManagerStats",
    "process_manager",
    "set_process_manager_provider",
]

Hook = Callable[[str, Any], Awaitable[None] | None]
H = TypeVar("H", bound=Hook)

_BEARER = "bearer"
_SHUTDOWN_REASON = "server shutting down"
logger = logging.getLogger("svc_infra.websocket.manager")


def _leeway() -> float:
    """``AUTH_JWT__LEEWAY``: a token counts as expired only this long after ``exp``."""
    from .auth.core import JWTSettings

    try:
        return JWTSettings.load().leeway
    except Exception:  # no JWT configured (API keys only): no leeway
        return 0.0


class ConnectionManager:
    """Track users, their connections and rooms; deliver through a Channels layer.

    Args:
        layer: A Channels channel layer. ``None`` builds one: a ``channels_redis``
            layer when ``redis_url`` (or ``WS_REDIS_URL``) is set, else Django's
            default layer when Django is configured, else an in-memory layer
            (one process).
        redis_url: ``redis://host:port/db`` for a ``channels_redis`` layer.
        channel_prefix: Prefix of group names; characters Channels refuses are
            replaced (``"ws:"`` becomes ``"ws."``). Defaults to ``WS_CHANNEL_PREFIX``.
        config: Defaults to :func:`get_default_config` (the ``WS_*`` variables);
            ``outbox_limit``, ``close_timeout``, ``redis_layer`` and
            ``presence_ttl`` apply here.
        presence: Keep cluster-wide presence in Redis. ``None`` (the default)
            does so when the layer is a ``channels_redis`` layer; ``False``
            keeps presence per process.

    Raises:
        ConfigurationError: If a setting is invalid or ``channels-redis`` is
            missing for ``redis_url``.
    """

    #: Seconds between re-joins of this manager's groups. Channels layers forget a
    #: member after ``group_expiry`` (a day by default): a process up for longer
    #: would stop hearing other processes without this.
    group_refresh_interval: float = 3600.0
    #: Seconds a call to the layer may take before it counts as failed: a Redis
    #: that hangs must not hang the caller. Not applied to Channels' own
    #: in-memory layer, which cannot hang.
    layer_timeout: float = 5.0

    def __init__(
        self,
        layer: Any = None,
        *,
        redis_url: str | None = None,
        channel_prefix: str | None = None,
        config: WebSocketConfig | None = None,
        presence: bool | None = None,
    ) -> None:
        self.config = config if config is not None else get_default_config()
        self.prefix = normalize_prefix(channel_prefix or self.config.channel_prefix)
        self.layer = (
            layer
            if layer is not None
            else build_layer(
                redis_url=redis_url or self.config.redis_url, kind=self.config.redis_layer
            )
        )
        reserve_capacity(self.layer, f"{self.prefix}mgr*")
        self._backend = LayerBackend(
            self.layer,
            capabilities(self.layer),
            prefix=self.prefix,
            presence_ttl=self.config.presence_ttl,
            presence=presence,
            presence_url=self.config.presence_redis_url,
        )
        self.id = uuid.uuid4().hex[:16]
        self.stats = ManagerStats()
        #: Where publish times go, per target: set by ``svc_infra.websocket.metrics``;
        #: None (the default) measures nothing.
        self.timings: PublishTimer | None = None
        # The parts (see the module docstring); each gets only what it uses.
        self._registry = Registry()
        self._publisher = Publisher(
            self.layer,
            origin=self.id,
            registry=self._registry,
            stats=self.stats,
            call_timeout=self._backend.call_timeout(self.layer_timeout),
            local_groups=self._backend.caps.local_groups,
            channel=lambda: self._membership.channel,
        )
        self._membership = GroupMembership(
            self.layer,
            prefix=self.prefix,
            registry=self._registry,
            publisher=self._publisher,
            networked=self._backend.caps.networked,
            change=self._backend.group_change(lambda: self._publisher.call_timeout),
        )
        self._history = HistoryPolicy(self.config.history_size, self.config.history_ttl)
        # The store is made when the manager starts (configure_history may come first).
        self._recovery = Recovery(registry=self._registry, policy=self._history, store=None)
        self._rooms = Rooms(
            registry=self._registry,
            membership=self._membership,
            publisher=self._publisher,
            presence=self._presence,
            start=self.start,
            recovery=self._recovery,
            grace=self.config.room_grace,
        )
        self._connections = Connections(
            registry=self._registry,
            rooms=self._rooms,
            presence=self._presence,
            stats=self.stats,
            outbox_limit=self.config.outbox_limit,
            close_timeout=self.config.close_timeout,
            user_cap=self.config.max_connections_per_user,
        )
        self._limits = InboundLimits(
            stats=self.stats,
            max_size=self.config.max_message_size,
            rate=self.config.inbound_rate,
            burst=self.config.inbound_burst,
            limited=self._connections.end,
        )
        self._outbound = Outbound(
            publisher=self._publisher,
            recovery=self._recovery,
            history=self._history,
            stats=self.stats,
            start=self.start,
            timings=lambda: self.timings,
        )
        self._admission = Admission(
            registry=self._registry,
            presence=lambda: self.presence,
            limits=self._limits,
            stats=self.stats,
            end=self._connections.end,
            cap=self.config.max_connections_per_user,
            close_on_expiry=self.config.close_on_token_expiry,
            leeway=_leeway,
        )
        self._expiry = self._admission.expiry
        # Connections are refused (1001, before any frame) while draining, while
        # shutdown() runs, and for good once a signal stopped the process: a
        # connection the server still accepts then must not restart the manager.
        self._draining = False
        self._stopping = False
        self._exiting = False
        # start() and shutdown() one at a time: a start waiting behind a shutdown
        # starts afresh (new channel, new history store), never half of each.
        self._run_lock = asyncio.Lock()
        self._signals_restore: Callable[[], None] | None = None
        self._router = LayerRouter(
            origin=self.id,
            publisher=self._publisher,
            rooms=self._rooms,
            presence=self._presence,
            close_user=self._connections.close_user,
            stats=self.stats,
        )
        self._lifecycle = Lifecycle(
            name=self.id,
            registry=self._registry,
            connections=self._connections,
            membership=self._membership,
            router=self._router,
            open_channel=self._open_channel,
            receiver_for=self._backend.receiver_for,
            make_presence=self._make_presence,
            refresh_interval=lambda: self.group_refresh_interval,
            close_timeout=self.config.close_timeout,
        )

    def _presence(self) -> Presence | None:
        return self._lifecycle.presence

    # --- properties ------------------------------------------------------------------

    @property
    def active_users(self) -> list[str]:
        """Ids of the users with at least one connection (in any process, with Redis)."""
        users = self._registry.users
        if self.presence is None:
            return list(users)
        return list(dict.fromkeys([*users, *self.presence.remote_users()]))

    @property
    def connection_count(self) -> int:
        """Number of open connections (in every process, with Redis)."""
        remote = 0 if self.presence is None else self.presence.remote_count()
        return len(self._registry.conns) + remote

    @property
    def local_connection_count(self) -> int:
        """Number of open connections in this process."""
        return len(self._registry.conns)

    @property
    def channel_name(self) -> str | None:
        """This manager's channel on the layer, once started."""
        return self._membership.channel

    # --- hooks -----------------------------------------------------------------------

    def on_connect(self, func: H) -> H:
        """Register ``func(user_id, websocket)`` to run after each connection opens.

        Several handlers may be registered; they run in order. One that raises is
        logged and counted; the connection stays registered and the other
        handlers still run.
        """
        self._connections.connect_hooks.append(func)
        return func

    def on_disconnect(self, func: H) -> H:
        """Register ``func(user_id, websocket)`` to run once after each connection ends.

        It runs whether the connection ended by :meth:`disconnect`, by a failed
        write, by eviction as a slow consumer, or by :meth:`shutdown`, and after
        the connection has left the manager's state.
        """
        self._connections.disconnect_hooks.append(func)
        return func

    # --- lifecycle -------------------------------------------------------------------

    @property
    def presence(self) -> RedisPresence | None:
        """The cluster-wide presence store while started with Redis presence, else None."""
        return cast("RedisPresence | None", self._lifecycle.presence)

    async def start(self) -> None:
        """Open this manager's channel and start receiving from the layer.

        Called by :meth:`connect` and by the framework integrations; calling it
        again does nothing.

        Raises:
            Exception: Whatever the layer raises when it cannot be reached.
        """
        if self._lifecycle.started():
            return
        async with self._run_lock:
            if self._recovery.store is None and self._history.enabled:
                self._recovery.store = self._backend.make_history(self.config.history_meta_ttl)
            await self._lifecycle.start()

    async def shutdown(
        self, code: int = CloseCode.GOING_AWAY, reason: str = _SHUTDOWN_REASON
    ) -> None:
        """Close every connection with ``code`` and stop receiving.

        Pending messages are flushed first, within ``close_timeout``. Each
        connection's ``on_disconnect`` handlers run. The manager can be started
        again afterwards.

        Connections that arrive meanwhile are refused (1001, before any frame).

        Cancelling is not safe: connections may be left open.
        """
        self._stopping = True
        try:
            self._expiry.clear()
            async with self._run_lock:
                await self._lifecycle.shutdown(code, reason)
                await cancel_and_wait(self._recovery.tasks)
                store, self._recovery.store = self._recovery.store, None
                if store is not None:
                    await store.close()
        finally:
            self._stopping = False
            self._draining = False

    async def drain(self, code: int = CloseCode.GOING_AWAY, reason: str = _SHUTDOWN_REASON) -> None:
        """Stop taking connections and close every socket with ``code`` in batches:
        ``drain_batch`` sockets every ``drain_interval`` seconds, all within
        ``drain_timeout`` (after ``drain_notice``, if set). Closes are normal ones:
        presence and rooms are cleaned, ``on_disconnect`` runs. New connections are
        closed with 1001 (:exc:`ServerDrainingError`) until :meth:`shutdown` has
        returned (for good after SIGINT/SIGTERM, see :meth:`drain_on_signals`).

        Cancelling is not safe: sockets may stay open.
        """
        self._draining = True
        cfg = self.config
        closed = await drain(
            self._connections,
            self._registry,
            code=code,
            reason=reason,
            batch=cfg.drain_batch,
            interval=cfg.drain_interval,
            within=cfg.drain_timeout,
            notice=cfg.drain_notice,
        )
        logger.info("drained %d connections", closed)

    def drain_on_signals(self) -> Callable[[], None]:
        """Make SIGINT and SIGTERM :meth:`drain` and :meth:`shutdown` this manager
        before the server's own handler runs; a second signal reaches it at once.
        Once per manager, from the main thread (elsewhere it does nothing).
        ``add_websocket_manager`` and the Django consumers call it.

        Returns:
            A function that puts the server's handlers back.
        """
        if self._signals_restore is None:
            restore = drain_on_signals(self._drain_and_stop)

            def undo() -> None:
                self._signals_restore = None
                if restore is not None:
                    restore()

            self._signals_restore = undo
        return self._signals_restore

    async def _drain_and_stop(self) -> None:
        # The process is going away: the server may still accept a connection or
        # two before it stops listening, and they must be refused, not restart us.
        self._exiting = True
        await self.drain()
        await self.shutdown()

    def _refusing(self) -> bool:
        return self._draining or self._stopping or self._exiting

    async def _refuse(self, transport: Any, user: str) -> NoReturn:
        """Close a connection this manager will not take (draining, stopping) with
        1001 before any frame. The handshake is accepted first, with the
        subprotocol it would have had: refused before accept, the client would see
        HTTP 403, which reads as a bad credential; accepted without
        ``svc-infra.v1``, a recovering client would read "nothing to recover"."""
        if not transport.accepted:
            offered = transport.subprotocols
            chosen = next((p for p in (SUBPROTOCOL, _BEARER) if p in offered), None)
            await transport.accept(chosen)
        await transport.close(CloseCode.GOING_AWAY, _SHUTDOWN_REASON)
        raise ServerDrainingError(user)

    async def refresh_groups(self) -> None:
        """Join again every group this manager's channel belongs to.

        Runs every :attr:`group_refresh_interval` seconds once started; layers
        drop members after their ``group_expiry``. Errors are logged and counted.
        """
        await self._membership.refresh()

    def _make_presence(self) -> RedisPresence | None:
        host = PartsPresenceHost(
            self.id,
            self._registry,
            self._rooms,
            self._publisher,
            groups_in_redis=self._backend.caps.redis == "core",
        )
        return self._backend.make_presence(host)

    async def _open_channel(self) -> str:
        # layer_timeout may have been set on the instance since it was built.
        self._publisher.call_timeout = self._backend.call_timeout(self.layer_timeout)
        return await self._backend.open_channel()

    # --- connections -----------------------------------------------------------------

    async def connect(
        self, user_id: str, websocket: Any, metadata: dict[str, Any] | None = None
    ) -> str:
        """Register ``websocket`` as a connection of ``user_id``; return its id.

        Accepts the handshake if the caller has not (with the ``bearer``
        subprotocol when the client offered it, as browsers sending a token that
        way require). A user may hold many connections; rooms the user joined,
        before or after, apply to all of them.

        Args:
            user_id: The user (``str``; an ``int`` is converted).
            websocket: A Starlette/FastAPI ``WebSocket``, a Channels consumer, or
                any :class:`~svc_infra.websocket.connection.Transport`.
            metadata: JSON-serializable data kept in the connection's
                :class:`ConnectionInfo`.

        Raises:
            TypeError: If ``websocket`` is of an unsupported type, ``user_id``
                of the wrong type, or ``metadata`` not a JSON-serializable dict.
            ValueError: With Redis presence, if ``user_id`` is not valid UTF-8
                text (a lone surrogate).
            ServerDrainingError: If the manager is draining or shutting down (or
                a signal stopped it): the socket was closed with 1001 before any
                frame.
            TooManyConnectionsError: If the user is over the per-user cap (the
                socket was closed with 4008).
        """
        uid = user_key(user_id)
        data = check_metadata(metadata)
        existing = self._registry.by_socket(websocket)
        if existing is not None:
            return existing.id
        transport = adapt(websocket)
        if not self._refusing():
            await self.start()
        if self._refusing():  # checked again: a shutdown may have begun meanwhile
            await self._refuse(transport, uid)
        if self.presence is not None:
            check_utf8("user_id", uid)
        connection_id = os.urandom(16).hex()  # a uuid4().hex without the UUID object
        with self._admission.claiming(uid):
            admitted = await self._admission.admit(uid, connection_id)
            session = None
            if not transport.accepted:
                offered = transport.subprotocols
                if SUBPROTOCOL in offered:  # stream headers and recovery (docs/recovery.md)
                    session = Session(parse_positions(getattr(transport, "query_string", b"")))
                    await transport.accept(SUBPROTOCOL)
                else:
                    await transport.accept(_BEARER if _BEARER in offered else None)
            if not admitted:
                self.stats.limited_connections += 1
                await transport.close(CloseCode.TOO_MANY_CONNECTIONS, "Too many connections")
                raise TooManyConnectionsError(uid, self.config.max_connections_per_user)
            # Registered right after the accept, with no await in between: once the
            # client sees its handshake succeed, messages sent to the user reach it
            # (a v1 session holds them until its replay is out).
            conn, first = self._connections.open(
                uid, websocket, transport, data, session, connection_id
            )
        if self._refusing():
            # A shutdown began while we accepted: it may have closed the others
            # before this one was registered. Nothing was sent on it yet.
            self._connections.end(conn, CloseCode.GOING_AWAY, _SHUTDOWN_REASON)
            raise ServerDrainingError(uid)
        self._admission.watch(conn, transport)
        if first:
            await self._membership.sync_user(uid)
        if session is not None:
            await self._recovery.begin(conn)
        await self._connections.run_hooks(self._connections.connect_hooks, uid, websocket)
        return conn.id

    async def disconnect(
        self, user_id: str, websocket: Any = None, *, code: int = 1000, reason: str = ""
    ) -> None:
        """Close and remove a connection, or all of a user's connections.

        With ``websocket``: that connection (nothing happens if it is already
        gone, so calling this in a ``finally`` is safe). Without: every
        connection of the user, in every process. Messages already queued are
        flushed first, within ``close_timeout``.

        Raises:
            ChannelLayerError: Without ``websocket``, if other processes could
                not be told (this process's connections are closed).
        """
        uid = user_key(user_id)
        connections = self._connections
        if websocket is not None:
            conn = self._registry.by_socket(websocket)
            if conn is not None and conn.user_id == uid and connections.detach(conn):
                await connections.finish(conn, code, reason, flush=True)
            return
        await connections.close_user(uid, code, reason)
        message = {"type": lm.CLOSE, "user": uid, "code": code, "reason": reason}
        await self._publisher.publish(user_group(uid, self.prefix), message, "disconnect")

    # --- sending ---------------------------------------------------------------------

    async def send_to_user(self, user_id: str, message: Any) -> None:
        """Send ``message`` to every connection of ``user_id``, in every process.

        ``dict``/``list`` go as JSON text, ``str`` as text, ``bytes`` as binary.

        Raises:
            TypeError: If the message cannot be carried (a set, a dict with
                non-string keys, an arbitrary object).
            ChannelLayerError: If other processes could not be reached (this
                process's connections got the message).

        Cancelling is safe: this process's sockets already have the message;
        other processes may or may not get it.
        """
        uid = user_key(user_id)
        frame = lm.encode_payload(message)
        group = user_group(uid, self.prefix)
        await self._outbound.send(frame, "user", user_stream(uid), group, "send_to_user", user=uid)

    async def broadcast(self, message: Any, exclude_user: str | None = None) -> None:
        """Send ``message`` to every connection, except those of ``exclude_user``.

        Raises:
            TypeError: If the message cannot be carried.
            ChannelLayerError: If other processes could not be reached.

        Cancelling is safe, as for :meth:`send_to_user`.
        """
        exclude = None if exclude_user is None else user_key(exclude_user)
        frame = lm.encode_payload(message)
        group = self._membership.broadcast_group
        await self._outbound.send(
            frame, "broadcast", BROADCAST_STREAM, group, "broadcast", exclude=exclude
        )

    async def broadcast_to_room(
        self, room: str, message: Any, exclude_user: str | None = None
    ) -> None:
        """Send ``message`` to the connections of the room's members, except ``exclude_user``.

        Raises:
            TypeError: If the message cannot be carried.
            ChannelLayerError: If other processes could not be reached.

        Cancelling is safe, as for :meth:`send_to_user`.
        """
        exclude = None if exclude_user is None else user_key(exclude_user)
        frame = lm.encode_payload(message)
        group = room_group(room, self.prefix)
        await self._outbound.send(
            frame, "room", room_stream(room), group, "broadcast_to_room", room=room, exclude=exclude
        )

    # --- history ---------------------------------------------------------------------

    def configure_history(
        self, pattern: str, *, size: int | None = None, ttl: float | None = None
    ) -> None:
        """Keep ``size`` messages for ``ttl`` seconds on the streams matching the glob
        ``pattern`` (``"room:chat-*"``, ``"user:*"``, ``"broadcast"``); each defaults
        to ``history_size`` / ``history_ttl``. ``size=0`` turns history off there.
        Later calls win where patterns overlap. Call it before the manager starts.

        Raises:
            ValueError: If ``size`` is negative or ``ttl`` not positive.
        """
        self._history.set(pattern, size=size, ttl=ttl)

    # --- queries ---------------------------------------------------------------------

    def get_user_connections(self, user_id: str) -> list[ConnectionInfo]:
        """Information about each connection of ``user_id``: this process's
        (oldest first), then, with Redis presence, the other processes'."""
        uid = user_key(user_id)
        local = [c.info for c in self._registry.user_connections(uid)]
        if self.presence is None:
            return local
        return local + self.presence.remote_connections(uid)

    def is_user_connected(self, user_id: str) -> bool:
        """Whether ``user_id`` has at least one connection (anywhere, with Redis)."""
        uid = user_key(user_id)
        return uid in self._registry.users or (
            self.presence is not None and self.presence.has_remote(uid)
        )

    # --- rooms ----------------------------------------------------------------------

    @property
    def room_count(self) -> int:
        """Number of rooms with at least one member (in the cluster, with Redis)."""
        return len(self._registry.rooms)

    async def join_room(self, user_id: str, room: str) -> None:
        """Add ``user_id`` to ``room``: all the user's connections, now and later.

        Connections in this process receive the room's messages when this
        returns. Other processes learn it through the layer (``ws.join`` on the
        user's group; with Redis presence, ``ws.rooms`` to every process).

        Raises:
            ChannelLayerError: Without Redis presence, if the layer failed (this
                process changed, others did not hear). With Redis presence, if
                Redis could not be reached (nothing changed); once Redis has the
                change it does not raise: a failed announcement is made up for
                by the next comparison with Redis.
            ValueError: With Redis presence, if ``user_id`` or ``room`` is not
                valid UTF-8 text.

        Cancelling is safe: with Redis presence the change, once started, runs to
        its end (shielded), so Redis and the processes' views never disagree
        because of it; without, this process has changed and others may not.
        """
        await self._rooms.change(user_key(user_id), room, lm.JOIN)

    async def leave_room(self, user_id: str, room: str) -> None:
        """Remove ``user_id`` from ``room`` (all the user's connections).

        Raises:
            ChannelLayerError: As :meth:`join_room`.
        """
        await self._rooms.change(user_key(user_id), room, lm.LEAVE)

    def room_sizes(self) -> dict[str, int]:
        """Members per room (in the cluster, with Redis presence), largest first."""
        sizes = {room: len(members) for room, members in self._registry.rooms.items()}
        return dict(sorted(sizes.items(), key=lambda item: -item[1]))

    def get_room_users(self, room: str) -> list[str]:
        """Ids of the members of ``room`` (in the cluster, with Redis presence)."""
        return self._registry.members(room)


# --- this process's manager, for code that has no app to find it on ---------------
# ``get_ws_manager()`` with no argument means "this process's manager". In a Django
# process that is ``djangoapp.get_process_manager`` (one per CHANNEL_LAYERS alias);
# the package wires it in here, so the Starlette integration needs no Django import.

_process_provider: Callable[[str], ConnectionManager] | None = None


def set_process_manager_provider(provider: Callable[[str], ConnectionManager]) -> None:
    """Make :func:`process_manager` call ``provider(alias)``."""
    global _process_provider
    _process_provider = provider


def process_manager(alias: str = "default") -> ConnectionManager:
    """This process's manager on ``CHANNEL_LAYERS[alias]``.

    Raises:
        WebSocketError: If no provider is set, or as the provider raises (no
            such alias).
    """
    if _process_provider is None:
        raise WebSocketError("no process manager: svc_infra.websocket.djangoapp is not wired in")
    return _process_provider(alias)
