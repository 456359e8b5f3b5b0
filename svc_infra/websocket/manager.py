"""The :class:`ConnectionManager`: users, their connections and rooms, on a Channels layer.

How delivery works (see ``docs/manager.md``):

- Each manager owns one channel on the layer and a task that receives from it.
  The channel sits in the broadcast group, in the group of every user with a
  connection here, and in the group of every room such a user belongs to.
- ``send_to_user``, ``broadcast`` and ``broadcast_to_room`` write to this process's
  sockets directly, then make ONE ``group_send`` so that other processes (and any
  Channels code) do the same for theirs. A manager skips its own messages when
  they come back from the layer.
- Payloads are encoded once, by the sender; every process writes the same frame.
- Writes go through a bounded outbox per connection, so a slow client never holds
  up the others.

The module imports neither Django nor Starlette: sockets arrive through
:mod:`svc_infra.websocket.integrations`, the layer through
:mod:`svc_infra.websocket.layers`.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, TypeVar

from . import messages as lm
from .config import WebSocketConfig, get_default_config
from .connection import CLOSE_SLOW_CONSUMER, LocalConnection
from .dispatch import LayerDispatch
from .groups import broadcast_group, normalize_prefix, room_group, user_group
from .integrations import adapt
from .layers import build_layer, manager_channel, presence_client, reserve_capacity
from .models import ConnectionInfo
from .presence import RedisPresence
from .rooms import RoomState, check_utf8, user_key
from .stats import ManagerStats

__all__ = ["ConnectionManager", "ManagerStats", "easy_websocket_manager"]

logger = logging.getLogger("svc_infra.websocket.manager")

Hook = Callable[[str, Any], Awaitable[None] | None]
H = TypeVar("H", bound=Hook)

# 1011 "Internal Error": a write to the socket failed.
_CLOSE_SEND_FAILED = 1011
_BEARER = "bearer"


def _metadata(metadata: object) -> dict[str, Any]:
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict, not {type(metadata).__name__}")
    try:
        # Presence stores it as JSON: refuse at the call what could not be stored.
        json.dumps(metadata, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"metadata must be JSON-serializable: {exc}") from None
    return dict(metadata)


class ConnectionManager(RoomState, LayerDispatch):
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
        self._networked = not type(self.layer).__module__.startswith("channels.layers")
        self.id = uuid.uuid4().hex[:16]
        self.stats = ManagerStats()
        self._all_group = broadcast_group(self.prefix)
        self._conns: dict[str, LocalConnection] = {}
        self._by_socket: dict[int, LocalConnection] = {}
        # Users with a connection here; dicts are ordered sets.
        self._users: dict[str, dict[str, LocalConnection]] = {}
        RoomState.__init__(self)
        self._want_presence = presence
        self.presence: RedisPresence | None = None
        self._connect_hooks: list[Hook] = []
        self._disconnect_hooks: list[Hook] = []
        self._channel: str | None = None
        self._receiver: asyncio.Task[None] | None = None
        self._refresher: asyncio.Task[None] | None = None
        self._start_lock = asyncio.Lock()
        self._joined = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- properties ------------------------------------------------------------------

    @property
    def active_users(self) -> list[str]:
        """Ids of the users with at least one connection (in any process, with Redis)."""
        if self.presence is None:
            return list(self._users)
        return list(dict.fromkeys([*self._users, *self.presence.remote_users()]))

    @property
    def connection_count(self) -> int:
        """Number of open connections (in every process, with Redis)."""
        remote = 0 if self.presence is None else self.presence.remote_count()
        return len(self._conns) + remote

    @property
    def local_connection_count(self) -> int:
        """Number of open connections in this process."""
        return len(self._conns)

    @property
    def channel_name(self) -> str | None:
        """This manager's channel on the layer, once started."""
        return self._channel

    # --- hooks -----------------------------------------------------------------------

    def on_connect(self, func: H) -> H:
        """Register ``func(user_id, websocket)`` to run after each connection opens.

        Several handlers may be registered; they run in order. One that raises is
        logged and counted; the connection stays registered and the other
        handlers still run.
        """
        self._connect_hooks.append(func)
        return func

    def on_disconnect(self, func: H) -> H:
        """Register ``func(user_id, websocket)`` to run once after each connection ends.

        It runs whether the connection ended by :meth:`disconnect`, by a failed
        write, by eviction as a slow consumer, or by :meth:`shutdown`, and after
        the connection has left the manager's state.
        """
        self._disconnect_hooks.append(func)
        return func

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Open this manager's channel and start receiving from the layer.

        Called by :meth:`connect` and by the framework integrations; calling it
        again does nothing.

        Raises:
            Exception: Whatever the layer raises when it cannot be reached.
        """
        if self._started():
            return
        async with self._start_lock:
            if self._started():  # another task started it while we waited
                return
            channel = await manager_channel(self.layer, f"{self.prefix}mgr")
            presence: RedisPresence | None = None
            if self._want_presence is not False:
                client, key_prefix = presence_client(self.layer, self.prefix)
                if client is not None:
                    presence = RedisPresence(
                        client, self, key_prefix=key_prefix, ttl=self.config.presence_ttl
                    )
            # Nothing below can fail (a Redis that is down must not stop the
            # process from serving its own sockets: groups and presence are
            # written when it answers), and nothing is left half-started if the
            # caller is cancelled: the tasks, which exist before the first
            # await, join the broadcast group and write presence themselves.
            self._channel = channel
            self.presence = presence
            self._joined = asyncio.Event()
            loop = asyncio.get_running_loop()
            self._receiver = loop.create_task(self._receive_loop(), name=f"ws-manager-{self.id}")
            self._refresher = loop.create_task(self._refresh_loop(), name=f"ws-refresh-{self.id}")
            if presence is not None:
                presence.launch()
            await self._joined.wait()
            if presence is not None:
                await presence.wait_ready()

    def _started(self) -> bool:
        return self._receiver is not None

    async def shutdown(self, code: int = 1001, reason: str = "server shutting down") -> None:
        """Close every connection with ``code`` and stop receiving.

        Pending messages are flushed first, within ``close_timeout``. Each
        connection's ``on_disconnect`` handlers run. The manager can be started
        again afterwards.

        Cancelling is not safe: connections may be left open.
        """
        async with self._start_lock:  # not while start() is half-way
            await self._shutdown(code, reason)

    async def _shutdown(self, code: int, reason: str) -> None:
        await self._close_many(self._conns.values(), code, reason)
        if self._tasks:  # connections dropped meanwhile (failed writes) finish first
            _, late = await asyncio.wait(set(self._tasks), timeout=self.config.close_timeout)
            await _cancel(list(late))
        if self.presence is not None:
            await self.presence.stop()
            self.presence = None
        tasks = [t for t in (self._receiver, self._refresher) if t is not None]
        self._receiver = self._refresher = None
        await _cancel(tasks)
        if self._channel is not None:
            await self._layer_call(self.layer.group_discard(self._all_group, self._channel))
            self._channel = None

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
        """
        uid = user_key(user_id)
        data = _metadata(metadata)
        existing = self._by_socket.get(id(websocket))
        if existing is not None:
            return existing.id
        transport = adapt(websocket)
        await self.start()
        if self.presence is not None:
            check_utf8("user_id", uid)
        if not transport.accepted:
            offered = transport.subprotocols
            await transport.accept(_BEARER if _BEARER in offered else None)
        # Registered right after the accept, with no await in between: once the
        # client sees its handshake succeed, messages sent to the user reach it.
        info = ConnectionInfo(uid, uuid.uuid4().hex, metadata=data)
        conn = LocalConnection(
            info, websocket, transport, limit=self.config.outbox_limit, failed=self._failed
        )
        first = uid not in self._users
        self._conns[conn.id] = conn
        self._by_socket[id(websocket)] = conn
        self._users.setdefault(uid, {})[conn.id] = conn
        if self.presence is not None:
            self.presence.opened(info)
        if first:
            await self._join_groups(uid)
        await self._run_hooks(self._connect_hooks, uid, websocket)
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
        if websocket is not None:
            conn = self._by_socket.get(id(websocket))
            if conn is not None and conn.user_id == uid and self._detach(conn):
                await self._finish(conn, code, reason, flush=True)
            return
        await self._close_many(self._users.get(uid, {}).values(), code, reason)
        message = {"type": lm.CLOSE, "user": uid, "code": code, "reason": reason}
        await self._publish(user_group(uid, self.prefix), message, "disconnect")

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
        self._fan_out(frame, user=uid)
        await self._publish(
            user_group(uid, self.prefix), lm.send_message(frame, user=uid), "send_to_user"
        )

    async def broadcast(self, message: Any, exclude_user: str | None = None) -> None:
        """Send ``message`` to every connection, except those of ``exclude_user``.

        Raises:
            TypeError: If the message cannot be carried.
            ChannelLayerError: If other processes could not be reached.

        Cancelling is safe, as for :meth:`send_to_user`.
        """
        exclude = None if exclude_user is None else user_key(exclude_user)
        frame = lm.encode_payload(message)
        self._fan_out(frame, exclude=exclude)
        await self._publish(
            self._all_group, lm.send_message(frame, all=True, exclude=exclude), "broadcast"
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
        self._fan_out(frame, room=room, exclude=exclude)
        await self._publish(
            room_group(room, self.prefix),
            lm.send_message(frame, room=room, exclude=exclude),
            "broadcast_to_room",
        )

    # --- queries ---------------------------------------------------------------------

    def get_user_connections(self, user_id: str) -> list[ConnectionInfo]:
        """Information about each connection of ``user_id``: this process's
        (oldest first), then, with Redis presence, the other processes'."""
        uid = user_key(user_id)
        local = [c.info for c in self._users.get(uid, {}).values()]
        if self.presence is None:
            return local
        return local + self.presence.remote_connections(uid)

    def is_user_connected(self, user_id: str) -> bool:
        """Whether ``user_id`` has at least one connection (anywhere, with Redis)."""
        uid = user_key(user_id)
        return uid in self._users or (self.presence is not None and self.presence.has_remote(uid))

    # --- what presence calls -----------------------------------------------------------

    def local_connections(self) -> list[ConnectionInfo]:
        """This process's connections."""
        return [c.info for c in self._conns.values()]

    async def announce(self, message: dict[str, Any]) -> None:
        """Send a presence message to every process.

        Raises:
            ChannelLayerError: If the layer failed.
        """
        await self._publish(self._all_group, message, "presence")

    # --- internals: ending connections -----------------------------------------------

    def _detach(self, conn: LocalConnection) -> bool:
        """Remove ``conn`` from the state, at once. False if it was already gone."""
        if self._conns.pop(conn.id, None) is None:
            return False
        self._by_socket.pop(id(conn.socket), None)
        if self.presence is not None:
            self.presence.closed(conn.info)
        user_conns = self._users.get(conn.user_id)
        if user_conns is not None:
            user_conns.pop(conn.id, None)
            if not user_conns:
                del self._users[conn.user_id]
        return True

    async def _close_many(self, conns: Iterable[LocalConnection], code: int, reason: str) -> None:
        """Detach ``conns`` at once, then flush and close them concurrently."""
        detached = [c for c in list(conns) if self._detach(c)]
        await asyncio.gather(*(self._finish(c, code, reason, flush=True) for c in detached))

    async def _finish(self, conn: LocalConnection, code: int, reason: str, *, flush: bool) -> None:
        """After :meth:`_detach`: flush, close the socket, fix groups, run hooks."""
        if flush and conn.dropped_frames():
            await conn.flush(self.config.close_timeout)
        self.stats.frames_dropped += conn.dropped_frames()
        conn.stop()
        try:
            await asyncio.wait_for(conn.transport.close(code, reason), self.config.close_timeout)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.debug("closing connection %s failed", conn.id, exc_info=True)
        uid = conn.user_id
        if uid not in self._users:
            await self._left_here(uid)
        await self._run_hooks(self._disconnect_hooks, uid, conn.socket)

    def _failed(self, conn: LocalConnection, exc: BaseException | None) -> None:
        """A connection's outbox overflowed (``exc`` None) or its write failed."""
        if not self._detach(conn):
            return
        if exc is None:
            self.stats.slow_consumers += 1
            code, reason = CLOSE_SLOW_CONSUMER, "slow consumer: outbox full"
            logger.warning(
                "closing connection %s of user %r: outbox over %d bytes",
                conn.id,
                conn.user_id,
                self.config.outbox_limit,
            )
        else:
            self.stats.send_failures += 1
            code, reason = _CLOSE_SEND_FAILED, "send failed"
            logger.info("dropping connection %s of user %r: %r", conn.id, conn.user_id, exc)
        self.stats.frames_dropped += conn.dropped_frames() + (exc is None)
        conn.stop()
        self._spawn(self._finish(conn, code, reason, flush=False))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_hooks(self, hooks: list[Hook], uid: str, websocket: Any) -> None:
        kind = "on_connect" if hooks is self._connect_hooks else "on_disconnect"
        for hook in list(hooks):
            try:
                result = hook(uid, websocket)
                if inspect.isawaitable(result):
                    await result
            except asyncio.CancelledError:
                raise
            except Exception:
                self.stats.hook_errors += 1
                logger.exception("%s hook %r failed for user %r", kind, hook, uid)


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel ``tasks`` and wait until they end.

    A cancellation can be swallowed inside redis-py: on Python 3.11 an
    ``asyncio.timeout`` expiring at the same moment turns it into a
    TimeoutError, which the receive loop retries. So cancel again until done.
    """
    pending = set(tasks)
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.5)


def easy_websocket_manager(
    app: Any = None,
    *,
    layer: Any = None,
    redis_url: str | None = None,
    channel_prefix: str | None = None,
    **config_overrides: Any,
) -> ConnectionManager:
    """Build a configured manager in one call, and attach it to ``app`` if given.

    Settings come from the ``WS_*`` variables, then ``config_overrides``
    (``outbox_limit=...``, ``close_timeout=...``)::

        manager = easy_websocket_manager(app, redis_url="redis://localhost:6379/0")

    With a Starlette/FastAPI ``app`` this is :func:`add_websocket_manager`.

    Raises:
        ConfigurationError: If a setting is invalid.
        TypeError: If an override is not a configuration field.
    """
    config = get_default_config(**config_overrides)
    manager = ConnectionManager(
        layer, redis_url=redis_url, channel_prefix=channel_prefix, config=config
    )
    if app is not None:
        from .integrations.starlette import add_websocket_manager

        add_websocket_manager(app, manager)
    return manager
