"""A Channels layer on Redis Cluster: queues in hash-tagged keys, groups on sharded pub/sub.

Configured like channels_redis::

    CHANNEL_LAYERS = {"default": {
        "BACKEND": "svc_infra.websocket.scaleout.RedisClusterChannelLayer",
        "CONFIG": {"hosts": ["redis://node-1:6379", "redis://node-2:6379"]},
    }}

``hosts`` are seed nodes (any of them finds the rest); ``rediss://`` for TLS and a
password in the URL work. It runs on redis-py's asyncio ``RedisCluster`` and its
public API only (redis-py 8.0 or newer: sharded pub/sub on asyncio).

Where each thing lives, so that no slot is everyone's:

- a channel's queue is a Redis list, ``<prefix>:q:{<channel>}``: its own slot; a
  process-specific channel (``<name>.<process>!<local>``, from ``new_channel()``)
  queues in its process's list, ``<prefix>:p:{<process>}``, which one task per
  process reads;
- a group is a sharded pub/sub channel, ``<prefix>:g:{<group>}``: ``group_send`` is
  one ``SPUBLISH`` however many processes listen, and each process subscribes
  (``SSUBSCRIBE``) to the groups its channels are in and hands the message to
  them. Group membership lives in the process that receives for the channel.

Differences from channels_redis, by design: a group member must be a channel of
this layer's process (from ``new_channel()``), as with channels_redis' pub/sub
layer; for a channel of another process, ``send`` raises ``ChannelFull`` when
that process's queue in Redis (all its channels together) holds the channel's
capacity, and the receiving process drops a message for a channel whose local
queue is full (its sender cannot see that queue); a message published to a
group while a process's subscription is being re-established (a failover) does
not reach that process, as any pub/sub; a cancelled ``receive()`` of a plain
(not process-specific) channel may lose the message it was taking.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import string
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit

import msgpack  # type: ignore[import-untyped]
from channels.exceptions import ChannelFull
from channels.layers import BaseChannelLayer
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..exceptions import ConfigurationError
from ._shards import READ_BLOCK, Backoff, ShardSubscriptions, cancelled

__all__ = ["RedisClusterChannelLayer", "cluster_client"]

logger = logging.getLogger("svc_infra.websocket.cluster")

# BLPOP blocks this long per round (seconds); the client's read timeout exceeds it.
_BLOCK = READ_BLOCK
# Messages a process's reader takes from its queue per round trip.
_BATCH = 100

# Append if the queue has room, and keep the queue alive for the message's expiry.
# KEYS[1] queue; ARGV: message, capacity, expiry in ms.
_SEND = """
if redis.call('LLEN', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""


def _process_of(channel: str) -> str:
    """The process part of a process-specific channel: ``<prefix>.<process>!<local>``."""
    return channel.split("!", 1)[0].rsplit(".", 1)[-1]


def _seed(host: Any) -> tuple[ClusterNode, dict[str, Any]]:
    """A seed node and the client options of one ``hosts`` entry."""
    if isinstance(host, Mapping):
        options = dict(host)
        address = options.pop("address", None)
    else:
        options, address = {}, host
    if not isinstance(address, str):
        raise ConfigurationError("hosts", host, "a redis:// or rediss:// URL, or {'address': URL}")
    parts = urlsplit(address)
    if parts.scheme not in ("redis", "rediss", "redis+cluster", "rediss+cluster"):
        raise ConfigurationError("hosts", address, "a redis:// or rediss:// URL")
    if parts.scheme.startswith("rediss"):
        options.setdefault("ssl", True)
    if parts.username:
        options.setdefault("username", unquote(parts.username))
    if parts.password:
        options.setdefault("password", unquote(parts.password))
    return ClusterNode(parts.hostname or "127.0.0.1", parts.port or 6379), options


def _require_sharded_pubsub(hosts: list[Any]) -> None:
    from redis.asyncio.client import PubSub

    if not hasattr(PubSub, "ssubscribe"):  # redis-py 8.0 added it to asyncio
        raise ConfigurationError(
            "hosts", hosts, "redis-py 8.0 or newer: pip install 'svc-infra-websocket[cluster]'"
        )


def cluster_client(hosts: Iterable[Any], **overrides: Any) -> RedisCluster:
    """A redis-py ``RedisCluster`` on the seed ``hosts`` (URLs or ``{"address": URL}``).

    Raises:
        ConfigurationError: If a host entry is not a Redis URL.
    """
    # Here, not at import: on redis-py < 8 the module imports, and the layer
    # refuses with a ConfigurationError that names the extra.
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialWithJitterBackoff

    seeds = [_seed(host) for host in hosts]
    if not seeds:
        raise ConfigurationError("hosts", [], "at least one seed node")
    options: dict[str, Any] = {
        "socket_connect_timeout": 2.0,
        # Above the blocking reads' _BLOCK, and below the manager's layer timeout
        # (5 s): redis-py must see a hung node's timeout itself, since that is what
        # makes it refresh its slot map; a call cancelled first teaches it nothing.
        "socket_timeout": 2.0,
        "max_connections": 2000,
        # After a failover, a process that has not touched the promoted slots yet
        # still routes to the dead master: its call must outlive one topology
        # refresh (about a second of retries here), or one message per process
        # and stale slot is lost once the Cluster is whole again.
        "retry": Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), retries=6),
        **seeds[0][1],
        **overrides,
    }
    if "topology_refresh_min_interval" in inspect.signature(RedisCluster).parameters:
        # redis-py 8.2+: refresh after an error at most this often (its default: 1 s).
        options.setdefault("topology_refresh_min_interval", 0.25)
    return RedisCluster(startup_nodes=[node for node, _ in seeds], **options)


@dataclass
class _LoopState:
    """What the layer holds on one event loop (redis-py clients are bound to one)."""

    client: RedisCluster
    shards: ShardSubscriptions
    # Local channel -> (expires at, message) waiting for it.
    queues: dict[str, asyncio.Queue[tuple[float, dict[str, Any]]]] = field(default_factory=dict)
    # Group -> {local channel: when its membership expires}.
    groups: dict[str, dict[str, float]] = field(default_factory=dict)
    reader: asyncio.Task[None] | None = None
    closed: bool = False


class RedisClusterChannelLayer(BaseChannelLayer):  # type: ignore[misc]
    """A Channels layer on Redis Cluster (see the module's documentation).

    Args:
        hosts: Seed nodes: ``redis://``/``rediss://`` URLs, or ``{"address": URL, **options}``
            with redis-py client options.
        prefix: Prefix of every key and pub/sub channel.
        expiry: Seconds a message waits in a queue before it is dropped.
        group_expiry: Seconds a group membership lasts without a new ``group_add``.
        capacity: Messages a queue holds before ``send`` raises ``ChannelFull``.
        channel_capacity: ``{pattern: capacity}`` per channel name (globs or regexes).
    """

    extensions: ClassVar[list[str]] = ["groups", "flush"]

    def __init__(
        self,
        hosts: Iterable[Any] | None = None,
        prefix: str = "asgi",
        expiry: int = 60,
        group_expiry: int = 86400,
        capacity: int = 100,
        channel_capacity: Mapping[Any, int] | None = None,
    ) -> None:
        super().__init__(expiry=expiry, capacity=capacity)
        self.channel_capacity = self.compile_capacities(channel_capacity or {})
        self.hosts = list(hosts or ["redis://127.0.0.1:6379"])
        _require_sharded_pubsub(self.hosts)
        seeds = [_seed(host) for host in self.hosts]  # a bad entry fails here
        # The first seed's options (TLS, credentials) are every node's.
        self._node_options = seeds[0][1]
        self.prefix = prefix
        self.group_expiry = group_expiry
        # This process's name for its specific channels ("<client>!<local>").
        self.client_prefix = "".join(random.choices(string.ascii_letters, k=12))
        self._states: dict[asyncio.AbstractEventLoop, _LoopState] = {}

    # -- keys ---------------------------------------------------------------

    def _queue_key(self, channel: str) -> str:
        if "!" in channel:  # a process-specific channel queues in its process's list
            return self._process_key(_process_of(channel))
        return f"{self.prefix}:q:{{{channel}}}"

    def _process_key(self, process: str) -> str:
        return f"{self.prefix}:p:{{{process}}}"

    def _group_channel(self, group: str) -> str:
        return f"{self.prefix}:g:{{{group}}}"

    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        state = self._states.get(loop)
        if state is None:
            # Loops that have closed take their state with them.
            for old in [lp for lp in self._states if lp.is_closed()]:
                del self._states[old]
            client = cluster_client(self.hosts)
            shards = ShardSubscriptions(
                client,
                self._node_options,
                # Late-bound: ``made`` is the state made on the next line.
                lambda channel, data: self._deliver(made, channel, data),
            )
            made = self._states[loop] = _LoopState(client, shards)
            return made
        return state

    # -- the Channels layer API ---------------------------------------------

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        """Queue ``message`` for ``channel``.

        Raises:
            ChannelFull: If the channel's queue holds ``capacity`` messages.
            TypeError: If ``channel`` is not a valid channel name.
            RedisError: If the cluster cannot take it.
        """
        assert isinstance(message, dict), "message is not a dict"
        self.require_valid_channel_name(channel)
        state = self._state()
        if "!" in channel and channel in state.queues:
            # A channel of this very process: no round trip needed.
            if not self._offer(state, channel, time.time() + self.expiry, message):
                raise ChannelFull(channel)
            return
        payload = msgpack.packb(
            {"c": channel, "m": message, "e": time.time() + self.expiry}, use_bin_type=True
        )
        added = await state.client.eval(
            _SEND,
            1,
            self._queue_key(channel),
            payload,
            self.get_capacity(channel),
            int(self.expiry * 1000),
        )
        if not added:
            raise ChannelFull(channel)

    async def receive(self, channel: str) -> dict[str, Any]:
        """The next message for ``channel``, waiting for one.

        Cancelling is safe for a process-specific channel (nothing is taken from
        Redis for it); for a plain channel a message being taken may be lost.

        A plain channel's receive waits out connection errors and timeouts (a
        failover), retrying with backoff.

        Raises:
            TypeError: If ``channel`` is not a valid channel name.
            RedisError: If the Cluster refuses the read (plain channels).
        """
        self.require_valid_channel_name(channel)
        state = self._state()
        if "!" in channel:
            queue = self._local_queue(state, channel)
            self._ensure_reader(state)
            while True:
                expires, message = await queue.get()
                if expires >= time.time():
                    return message
        key = self._queue_key(channel)
        backoff = Backoff()
        while True:
            try:
                popped = await state.client.blpop([key], timeout=_BLOCK)
                backoff.reset()
            except (RedisConnectionError, RedisTimeoutError) as exc:
                # A failover or a hung node: a worker's receive waits it out
                # rather than end the worker.
                logger.warning(
                    "reading %s failed (%s); retrying in %.1f s", key, exc, backoff.delay
                )
                await backoff.pause()
                continue
            if popped is None:
                if cancelled():
                    raise asyncio.CancelledError
                continue
            entry = msgpack.unpackb(popped[1], raw=False)
            if entry["e"] >= time.time():
                return dict(entry["m"])

    async def new_channel(self, prefix: str = "specific") -> str:
        """A new process-specific channel name (``<prefix>.<process>!<random>``)."""
        channel = f"{prefix}.{self.client_prefix}!{uuid.uuid4().hex}"
        state = self._state()
        self._local_queue(state, channel)
        self._ensure_reader(state)
        return channel

    async def group_add(self, group: str, channel: str) -> None:
        """Add ``channel`` (a channel of this process, from :meth:`new_channel`) to ``group``.

        Raises:
            TypeError: If a name is not valid.
            ValueError: If ``channel`` is not this process's channel.
            RedisError: If the subscription cannot be made.
        """
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        state = self._state()
        if "!" not in channel or _process_of(channel) != self.client_prefix:
            raise ValueError(
                f"{channel!r} is not a channel of this process: RedisClusterChannelLayer "
                "groups hold channels from its new_channel()"
            )
        self._local_queue(state, channel)
        members = state.groups.setdefault(group, {})
        first = not members
        members[channel] = time.time() + self.group_expiry
        if first:
            try:
                await state.shards.subscribe(self._group_channel(group))
            except BaseException:
                members.pop(channel, None)
                if not members:
                    state.groups.pop(group, None)
                raise

    async def group_discard(self, group: str, channel: str) -> None:
        """Remove ``channel`` from ``group``; the last local member unsubscribes.

        Raises:
            TypeError: If a name is not valid.
        """
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        state = self._state()
        members = state.groups.get(group)
        if members is None or members.pop(channel, None) is None:
            return
        if not members:
            del state.groups[group]
            await state.shards.unsubscribe(self._group_channel(group))

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        """Send ``message`` to every channel in ``group``, in every process: one
        ``SPUBLISH``. A member whose queue is full misses it (never raises for that).

        Raises:
            TypeError: If ``group`` is not a valid group name.
            RedisError: If the cluster cannot take it.
        """
        assert isinstance(message, dict), "message is not a dict"
        self.require_valid_group_name(group)
        state = self._state()
        payload = msgpack.packb(message, use_bin_type=True)
        await state.client.spublish(self._group_channel(group), payload)

    async def flush(self) -> None:
        """Delete every key of this prefix on every master, and forget local state."""
        state = self._state()
        for members in state.groups.values():
            members.clear()
        state.groups.clear()
        state.queues.clear()
        async for key in state.client.scan_iter(match=f"{self.prefix}:*", count=1000):
            await state.client.delete(key)

    async def close(self) -> None:
        """Stop this loop's readers and close its connections."""
        loop = asyncio.get_running_loop()
        state = self._states.pop(loop, None)
        if state is None:
            return
        state.closed = True
        if state.reader is not None:
            state.reader.cancel()
            # It also ends by itself within one blocking read (see cancelled()).
            _, pending = await asyncio.wait([state.reader], timeout=_BLOCK * 3)
            if pending:
                logger.warning("the queue reader did not stop on close")
        await state.shards.close()
        await state.client.aclose()

    # -- this process's side ------------------------------------------------

    def _local_queue(
        self, state: _LoopState, channel: str
    ) -> asyncio.Queue[tuple[float, dict[str, Any]]]:
        queue = state.queues.get(channel)
        if queue is None:
            queue = state.queues[channel] = asyncio.Queue()
        return queue

    def _offer(
        self, state: _LoopState, channel: str, expires: float, message: dict[str, Any]
    ) -> bool:
        """Queue ``message`` for a local channel if it has room; False if full."""
        queue = self._local_queue(state, channel)
        if queue.qsize() >= self.get_capacity(channel):
            return False
        queue.put_nowait((expires, message))
        return True

    def _ensure_reader(self, state: _LoopState) -> None:
        if state.reader is None or state.reader.done():
            key = self._process_key(self.client_prefix)
            state.reader = asyncio.get_running_loop().create_task(self._read_queue(state, key))

    async def _read_queue(self, state: _LoopState, key: str) -> None:
        """Move this process's queued messages to its channels' local queues: one
        BLPOP waits for the first, one LPOP takes up to _BATCH - 1 queued behind it.

        A message for a channel whose local queue already holds its capacity is
        dropped (the sender could not see that queue: see the module).
        """
        backoff = Backoff()
        while not state.closed and not cancelled():
            try:
                popped = await state.client.blpop([key], timeout=_BLOCK)
                more = await state.client.lpop(key, _BATCH - 1) if popped is not None else None
                backoff.reset()
            except RedisError as exc:
                logger.warning(
                    "reading %s failed (%s); retrying in %.1f s", key, exc, backoff.delay
                )
                await backoff.pause()
                continue
            if popped is None:
                continue
            now = time.time()
            for raw in [popped[1], *(more or ())]:
                entry = msgpack.unpackb(raw, raw=False)
                if entry["e"] >= now:
                    self._offer(state, entry["c"], entry["e"], dict(entry["m"]))

    def _deliver(self, state: _LoopState, channel: str, data: bytes) -> None:
        """Hand a group message to the group's members in this process."""
        group = channel[len(self.prefix) + 4 : -1]  # "<prefix>:g:{" ... "}"
        members = state.groups.get(group)
        if not members:
            return
        body = msgpack.unpackb(data, raw=False)
        now = time.time()
        expires = now + self.expiry
        for member, joined_until in list(members.items()):
            if joined_until < now:
                del members[member]
                continue
            self._offer(state, member, expires, dict(body))
