"""The :class:`ConnectionManager`: users, their connections and rooms, on a Channels layer.

The manager is a facade over the parts of :mod:`svc_infra.websocket.server`, each
with one job, built in dependency order (each part gets only what it uses; the
running state, channel and presence, is a :class:`~.server._runtime.Runtime` they
read): ``Registry`` (connections, users, rooms), ``Recovery`` (history, replays),
``Publisher`` (every send: record, local fan-out, publish; every layer call),
``GroupMembership`` (this process's layer groups), ``Rooms``, ``Connections``
(opening, ending, hooks), ``Admission`` (caps, inbound limits, expiry),
``LayerRouter`` (one handler per layer message), ``Lifecycle`` (start, shutdown,
presence's host) and ``ManagerOps`` (``manager.ops``). The scale-out backend
(:mod:`svc_infra.websocket.scaleout`) supplies what depends on the layer's kind.

How delivery works (see ``docs/manager.md``): each manager owns one channel on the
layer. ``send_to_user``, ``broadcast`` and ``broadcast_to_room`` write to this
process's sockets directly, then make ONE ``group_send`` so that other processes
(and any Channels code) do the same for theirs. Payloads are encoded once, by the
sender. Writes go through a bounded outbox per connection.

The module imports neither Django nor Starlette: framework sockets are adapted by
:func:`~.server.transport.adapt`, with adapters the integrations register.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from . import layer_messages as lm
from .close_codes import CloseCode
from .config import WebSocketConfig, get_default_config
from .exceptions import ServerDrainingError, TooManyConnectionsError, WebSocketError
from .groups import check_utf8, normalize_prefix, user_group, user_key
from .models import ConnectionInfo
from .scaleout.backend import LayerBackend
from .scaleout.deferred import DeferredLayer
from .scaleout.layers import build_layer, capabilities, reserve_capacity
from .server._connections import check_metadata
from .server._drain import SHUTDOWN_REASON, Gate, drain, drain_on_signals
from .server._parts import build_parts
from .server._recovery import SUBPROTOCOL, chosen_subprotocol, parse_positions
from .server._rooms import RoomChange
from .server._session import Session
from .server._target import Target
from .server.queries import ClusterView
from .server.stats import ManagerStats
from .server.transport import adapt

__all__ = [
    "ConnectionManager",
    "ManagerStats",
    "process_manager",
    "set_process_manager_provider",
]

Hook = Callable[[str, Any], Awaitable[None] | None]
H = TypeVar("H", bound=Hook)

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
        layer: A Channels channel layer, or a function without arguments that
            returns one: it is then called when the layer is first needed, on the
            running event loop (for layers that refuse to be built without one,
            such as channels_rabbitmq's, in a manager created at import time).
            ``None`` builds one: a ``channels_redis`` layer when ``redis_url`` (or
            ``WS_REDIS_URL``) is set, else Django's default layer when Django is
            configured (also built on first use unless it needs no loop), else an
            in-memory layer (one process).
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
        # A layer class is a factory too; a layer instance is not callable.
        if isinstance(layer, type) or (callable(layer) and not hasattr(layer, "group_send")):
            layer = DeferredLayer(layer)
        layer = (
            layer
            if layer is not None
            else build_layer(
                redis_url=redis_url or self.config.redis_url, kind=self.config.redis_layer
            )
        )
        reserve_capacity(layer, f"{self.prefix}mgr*")
        backend = LayerBackend(
            layer,
            capabilities(layer),
            prefix=self.prefix,
            presence_ttl=self.config.presence_ttl,
            presence=presence,
            presence_url=self.config.presence_redis_url,
            presence_mode=self.config.presence_mode,
        )
        self.stats = ManagerStats()
        parts = build_parts(
            manager_id=uuid.uuid4().hex[:16],
            layer=layer,
            prefix=self.prefix,
            config=self.config,
            backend=backend,
            stats=self.stats,
            leeway=_leeway,
        )
        #: The operational side (layer, channel, presence, timings, timeouts):
        #: see :class:`~svc_infra.websocket.server.ops.ManagerOps`.
        self.ops = parts.ops
        #: Cluster-wide presence queries, as coroutines, in every presence mode:
        #: see :class:`~svc_infra.websocket.server.queries.ClusterView`.
        self.cluster = ClusterView(parts.registry, parts.runtime, self.start)
        self._runtime = parts.runtime
        self._registry = parts.registry
        self._history = parts.history
        self._recovery = parts.recovery
        self._publisher = parts.publisher
        self._membership = parts.membership
        self._rooms = parts.rooms
        self._connections = parts.connections
        self._admission = parts.admission
        self._expiry = parts.admission.expiry
        self._lifecycle = parts.lifecycle
        self._broadcast = Target.everyone(self.prefix)
        self._gate = Gate()  # refuses new connections while draining or stopping
        self._signals_restore: Callable[[], None] | None = None

    # --- properties ------------------------------------------------------------------

    @property
    def active_users(self) -> list[str]:
        """Ids of the users with at least one connection (in any process, with Redis)."""
        users = self._registry.users
        if self._runtime.presence is None:
            return list(users)
        return list(dict.fromkeys([*users, *self._runtime.presence.remote_users()]))

    @property
    def connection_count(self) -> int:
        """Number of open connections (in every process, with Redis)."""
        remote = 0 if self._runtime.presence is None else self._runtime.presence.remote_count()
        return len(self._registry.conns) + remote

    @property
    def local_connection_count(self) -> int:
        """Number of open connections in this process."""
        return len(self._registry.conns)

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

    async def start(self) -> None:
        """Open this manager's channel and start receiving from the layer.

        Called by :meth:`connect` and by the framework integrations; calling it
        again does nothing.

        Raises:
            Exception: Whatever the layer raises when it cannot be reached.
        """
        await self._lifecycle.start()

    async def shutdown(
        self, code: int = CloseCode.GOING_AWAY, reason: str = SHUTDOWN_REASON
    ) -> None:
        """Close every connection with ``code`` and stop receiving.

        Pending messages are flushed first, within ``close_timeout``. Each
        connection's ``on_disconnect`` handlers run. The manager can be started
        again afterwards.

        Connections that arrive meanwhile are refused (1001, before any frame).

        Cancelling is not safe: connections may be left open.
        """
        self._gate.stopping = True
        try:
            self._expiry.clear()
            await self._lifecycle.shutdown(code, reason)
        finally:
            self._gate.stopping = self._gate.draining = False

    async def drain(self, code: int = CloseCode.GOING_AWAY, reason: str = SHUTDOWN_REASON) -> None:
        """Stop taking connections and close every socket with ``code`` in batches:
        ``drain_batch`` sockets every ``drain_interval`` seconds, all within
        ``drain_timeout`` (after ``drain_notice``, if set). Closes are normal ones:
        presence and rooms are cleaned, ``on_disconnect`` runs. New connections are
        closed with 1001 (:exc:`ServerDrainingError`) until :meth:`shutdown` has
        returned (for good after SIGINT/SIGTERM, see :meth:`drain_on_signals`).

        Cancelling is not safe: sockets may stay open.
        """
        self._gate.draining = True
        closed = await drain(
            self._connections, self._registry, self.config, code=code, reason=reason
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
        self._gate.exiting = True  # the process is going away (see Gate)
        await self.drain()
        await self.shutdown()

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
                any :class:`~svc_infra.websocket.server.transport.Transport`.
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
        gate = self._gate
        if not gate.closed():
            await self.start()
        if gate.closed():  # checked again: a shutdown may have begun meanwhile
            await gate.refuse(transport, uid)
        if self._runtime.presence is not None:
            check_utf8("user_id", uid)
        connection_id = os.urandom(16).hex()  # a uuid4().hex without the UUID object
        with self._admission.claiming(uid):
            admitted = await self._admission.admit(uid, connection_id)
            session = None
            if not transport.accepted:
                chosen = chosen_subprotocol(transport.subprotocols)
                if chosen == SUBPROTOCOL:  # stream headers and recovery (docs/recovery.md)
                    session = Session(parse_positions(getattr(transport, "query_string", b"")))
                await transport.accept(chosen)
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
        if gate.closed():
            # A shutdown began while we accepted: it may have closed the others
            # before this one was registered. Nothing was sent on it yet.
            self._connections.end(conn, CloseCode.GOING_AWAY, SHUTDOWN_REASON)
            raise ServerDrainingError(uid)
        self._admission.watch(conn, transport)
        if first:
            await self._membership.sync_user(uid)
            await self._rooms.load(uid)
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
        target = Target.of_user(user_key(user_id), self.prefix)
        frame = lm.encode_payload(message)
        await self._start_for_history()
        await self._publisher.send(target, frame)

    async def broadcast(self, message: Any, exclude_user: str | None = None) -> None:
        """Send ``message`` to every connection, except those of ``exclude_user``.

        Raises:
            TypeError: If the message cannot be carried.
            ChannelLayerError: If other processes could not be reached.

        Cancelling is safe, as for :meth:`send_to_user`.
        """
        exclude = None if exclude_user is None else user_key(exclude_user)
        frame = lm.encode_payload(message)
        await self._start_for_history()
        await self._publisher.send(self._broadcast, frame, exclude)

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
        await self._start_for_history()
        await self._publisher.send(Target.of_room(room, self.prefix), frame, exclude)

    async def _start_for_history(self) -> None:
        # History needs its store, made on start; without history a send needs
        # nothing started (no await at all on the hot path).
        if self._history.enabled and not self._lifecycle.started():
            await self.start()

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
        if self._runtime.presence is None:
            return local
        return local + self._runtime.presence.remote_connections(uid)

    def is_user_connected(self, user_id: str) -> bool:
        """Whether ``user_id`` has at least one connection (anywhere, with Redis)."""
        uid = user_key(user_id)
        return uid in self._registry.users or (
            self._runtime.presence is not None and self._runtime.presence.has_remote(uid)
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
        # Started first: a process that has not (a Django worker with no socket
        # yet) would not know it should go through Redis.
        await self.start()
        await self._rooms.change(user_key(user_id), room, RoomChange.JOIN)

    async def leave_room(self, user_id: str, room: str) -> None:
        """Remove ``user_id`` from ``room`` (all the user's connections).

        Raises:
            ChannelLayerError: As :meth:`join_room`.
        """
        await self.start()
        await self._rooms.change(user_key(user_id), room, RoomChange.LEAVE)

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
