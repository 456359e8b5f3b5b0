"""Configuration: :class:`WebSocketConfig` and the ``WS_*`` environment variables.

The environment is read when a configuration is built (:func:`get_default_config`,
:meth:`WebSocketConfig.from_env`), never at import time, so tests and programs can
set variables before asking. Every value is validated; a bad one raises
:exc:`~svc_infra.websocket.exceptions.ConfigurationError` naming the environment
variable (or the keyword argument) and the value.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from .exceptions import ConfigurationError

__all__ = [
    "CLUSTER_SCHEMES",
    "ENV_PREFIX",
    "REDIS_SCHEMES",
    "SERVER_SCHEMES",
    "WebSocketConfig",
    "check_redis_url",
    "check_server_url",
    "get_default_config",
    "is_cluster_url",
    "sentinel_hosts",
]

ENV_PREFIX = "WS_"

# Spellings that mean "no value" for the optional settings (pings).
_NONE_WORDS = frozenset({"", "none", "null"})
_TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
_FALSE_WORDS = frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True, slots=True)
class WebSocketConfig:
    """Settings shared by the client and the server side.

    Each field has a ``WS_<FIELD>`` environment variable (see
    :func:`get_default_config`); constructing the class directly ignores the
    environment and uses the defaults below for what is not given.

    Args:
        open_timeout: Seconds allowed for the TCP connection and opening handshake.
        close_timeout: Seconds allowed for the closing handshake.
        ping_interval: Seconds between keepalive pings; ``None`` disables them.
        ping_timeout: Seconds to wait for a pong before dropping the connection;
            ``None`` waits forever.
        max_message_size: Largest message accepted or sent, in bytes.
        max_queue_size: Incoming frames buffered before reading pauses.
        reconnect_enabled: Whether :func:`websocket_connect` retries at all.
        reconnect_max_attempts: Consecutive failed attempts before giving up;
            0 retries forever.
        reconnect_backoff_base: Delay before the first retry, in seconds.
        reconnect_backoff_max: Upper bound of the delay between retries.
        reconnect_jitter: Relative spread of each delay, between 0 and 1.
        outbox_limit: Server side: bytes (characters for text) a connection may
            have waiting to be written before it is closed as a slow consumer.
        channel_prefix: Server side: prefix of the manager's Channels group names.
        redis_url: Server side: a ``redis://`` URL, and the manager builds a
            ``channels_redis`` layer; or a ``redis+cluster://`` (``rediss+cluster://``)
            URL of any node of a Redis Cluster, and it builds
            :class:`~svc_infra.websocket.scaleout.cluster.RedisClusterChannelLayer`.
            ``None`` keeps the in-memory (or Django) layer.
        redis_layer: Server side: which ``channels_redis`` layer a ``redis://``
            ``redis_url`` builds: ``"core"`` (lists, the default) or ``"pubsub"``.
            A Redis Cluster has one layer: ``"pubsub"`` is refused there.
        redis_sentinels: Django's ``channel_layers_from_env()``: Redis Sentinel
            instead of ``redis_url``, as ``"host:port[,host:port...]"``.
        redis_sentinel_master: The primary those sentinels monitor.
        presence_ttl: Server side, with Redis: seconds after which a process that
            stopped heartbeating (killed, frozen) no longer counts in presence.
        presence_redis_url: Server side: the Redis that holds presence, history
            and connection slots (a ``redis://`` URL), with any Channels layer
            (channels_redis, Postgres, RabbitMQ, in-memory...); ``None`` keeps them
            on a channels_redis layer's first host (other layers then have
            presence and history per process, and a warning says so). Give it
            when the layer shards over several hosts, so that they do not load
            (and depend on) one shard. Every process of a cluster must use the
            same. On a Redis Cluster layer, history stays on the Cluster and this
            one Redis holds presence and connection slots (without it, presence
            is per process, or on the Cluster in the index mode).
        presence_mode: Server side: ``"mirror"`` (the default: every process
            mirrors every connection and room set, so the manager's synchronous
            queries answer for the whole cluster) or ``"index"`` (presence lives
            in Redis only, indexed per user, room and bucket: a process's memory
            grows with its own connections; synchronous queries answer for this
            process, ``manager.cluster`` for all). See ``docs/scaling.md``.
        history_size: Server side: messages kept per stream for recovery after a
            reconnect (``docs/recovery.md``); 0 (the default) keeps none.
        history_ttl: Server side: seconds a stream's messages are kept at most.
        history_meta_ttl: Server side: seconds a stream's epoch and top offset
            outlive its last message (a day by default; never less than the
            stream's ``ttl``): a client away for less that missed nothing is told
            "recovered"; after it, the stream starts a new epoch. Each stream
            costs about 100 B of Redis for this long.
        room_grace: Server side: seconds a user keeps their rooms after their last
            connection closed (0, the default: they leave at once). A user who
            reconnects within it, to any process, is still in their rooms, and a
            recovering client gets what the rooms had meanwhile: set it with
            history for clients that reconnect after a cut.
        close_on_token_expiry: Server side: close a connection with 4401 when the
            ``exp`` of the JWT (or API key) it was opened with passes.
        inbound_rate: Server side: messages per second a connection may send
            (a token bucket; 0, the default, is no limit); over it: 4429.
        inbound_burst: Server side: the bucket's size: messages a connection may
            send at once (0: the same as ``inbound_rate``, at least 1).
        max_connections_per_user: Server side: connections one user may hold
            (cluster-wide with Redis presence); 0 is no limit. Over it: 4008.
        cap_policy: Server side: what a connection over
            ``max_connections_per_user`` does: ``"refuse"`` (the default: it is
            closed with 4008) or ``"newest"`` (it opens, and the user's oldest
            connection is closed with 4409, in whatever process it is; a connection
            of a crashed process is simply dropped).
        drain_batch: Server side: sockets closed at a time when the process drains
            (SIGTERM/SIGINT, ``ConnectionManager.drain()``).
        drain_interval: Server side: seconds between two batches.
        drain_timeout: Server side: seconds a drain may take; what is left then
            is closed at once.
        drain_notice: Server side: a text frame sent to every socket before the
            drain closes it (the spec's ``{"type": "system", "message": "Server
            shutting down"}``, say); None sends none.
        relay_poll_interval: Django's outbox relay (``ws_outbox``): seconds
            between two looks for committed rows when no notification says there
            are some (on PostgreSQL, ``LISTEN``/``NOTIFY`` wakes it at once; on
            other databases this is the latency).
        relay_batch: Rows the relay publishes per transaction.
        relay_retention: Seconds sent rows are kept before the relay deletes them.
        relay_in_process: Run the outbox relay inside each server process that
            has a manager (small deployments; see ``docs/outbox.md``).

    Raises:
        ConfigurationError: If a value is of the wrong type or out of range.
    """

    open_timeout: float = 10.0
    close_timeout: float = 10.0
    ping_interval: float | None = 20.0
    ping_timeout: float | None = 20.0
    max_message_size: int = 1_048_576
    max_queue_size: int = 16
    reconnect_enabled: bool = True
    reconnect_max_attempts: int = 5
    reconnect_backoff_base: float = 1.0
    reconnect_backoff_max: float = 60.0
    reconnect_jitter: float = 0.1
    outbox_limit: int = 1_048_576
    channel_prefix: str = "ws."
    redis_url: str | None = None
    redis_layer: str = "core"
    redis_sentinels: str | None = None
    redis_sentinel_master: str = "mymaster"
    presence_ttl: float = 30.0
    presence_mode: str = "mirror"
    presence_redis_url: str | None = None
    history_size: int = 0
    history_ttl: float = 300.0
    history_meta_ttl: float = 86_400.0
    room_grace: float = 0.0
    close_on_token_expiry: bool = True
    inbound_rate: float = 0.0
    inbound_burst: int = 0
    max_connections_per_user: int = 0
    cap_policy: str = "refuse"
    drain_batch: int = 500
    drain_interval: float = 0.5
    drain_timeout: float = 10.0
    drain_notice: str | None = None
    relay_poll_interval: float = 1.0
    relay_batch: int = 100
    relay_retention: float = 86_400.0
    relay_in_process: bool = False

    def __post_init__(self) -> None:
        for f in fields(self):
            _SPECS[f.name].check(getattr(self, f.name), f.name)
        if self.reconnect_backoff_max < self.reconnect_backoff_base:
            raise ConfigurationError(
                "reconnect_backoff_max",
                self.reconnect_backoff_max,
                f"a number >= reconnect_backoff_base ({self.reconnect_backoff_base})",
            )

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> WebSocketConfig:
        """Build a configuration from ``WS_*`` variables, then keyword overrides.

        Args:
            environ: Where to read variables; defaults to :data:`os.environ`.
            **overrides: Field values that take precedence over the environment.

        Raises:
            ConfigurationError: If a variable or an override is invalid; the
                message names the variable (``WS_OPEN_TIMEOUT``) or keyword.
            TypeError: If an override is not a field of this class.
        """
        env = os.environ if environ is None else environ
        unknown = set(overrides) - _SPECS.keys()
        if unknown:
            raise TypeError(f"unknown WebSocketConfig field(s): {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {}
        raws: dict[str, str] = {}
        for name, spec in _SPECS.items():
            var = ENV_PREFIX + name.upper()
            raw = env.get(var)
            if name in overrides or raw is None:
                continue
            values[name] = spec.parse(raw, var)
            raws[name] = raw
        values.update(overrides)
        try:
            return cls(**values)
        except ConfigurationError as exc:
            if exc.name in raws and exc.name not in overrides:
                # Report the variable the user set, with the text they wrote.
                var = ENV_PREFIX + exc.name.upper()
                raise ConfigurationError(var, raws[exc.name], exc.expected) from None
            raise

    def replace(self, **changes: Any) -> WebSocketConfig:
        """Return a copy with some fields changed (validated like the constructor)."""
        return replace(self, **changes)


def get_default_config(**overrides: Any) -> WebSocketConfig:
    """Return the configuration from the environment, with keyword overrides.

    The ``WS_*`` variables are read at each call: ``WS_<FIELD>`` for each field of
    :class:`WebSocketConfig` (``WS_OPEN_TIMEOUT``, ``WS_REDIS_URL``, ...), each
    with its default and valid values in ``docs/configuration.md``.

    Raises:
        ConfigurationError: If a variable or an override is invalid.
        TypeError: If an override is not a configuration field.
    """
    return WebSocketConfig.from_env(**overrides)


# --- parsing and validation ------------------------------------------------------


def _parse_float(raw: str, name: str) -> float:
    try:
        return float(raw.strip())
    except ValueError:
        raise ConfigurationError(name, raw, "a number") from None


def _parse_optional_float(raw: str, name: str) -> float | None:
    if raw.strip().lower() in _NONE_WORDS:
        return None
    try:
        return float(raw.strip())
    except ValueError:
        raise ConfigurationError(name, raw, "a number, or none/null/empty to disable") from None


def _parse_int(raw: str, name: str) -> int:
    try:
        return int(raw.strip())
    except ValueError:
        raise ConfigurationError(name, raw, "a whole number") from None


def _parse_str(raw: str, name: str) -> str:
    return raw.strip()


def _parse_choice(raw: str, name: str) -> str:
    return raw.strip().lower()


def _parse_optional_str(raw: str, name: str) -> str | None:
    return raw.strip() or None


#: The URL schemes of a Redis Cluster (``redis_url``): any node is a seed.
CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")

#: The URL schemes of one Redis server (``presence_redis_url``).
SERVER_SCHEMES = ("redis://", "rediss://", "unix://")

#: The URL schemes ``redis_url`` takes: one Redis server, or a Redis Cluster.
REDIS_SCHEMES = (*SERVER_SCHEMES, *CLUSTER_SCHEMES)


def is_cluster_url(url: str | None) -> bool:
    """Whether ``url`` names a Redis Cluster (``redis+cluster://``, ``rediss+cluster://``)."""
    return isinstance(url, str) and url.startswith(CLUSTER_SCHEMES)


def check_redis_url(url: str, name: str) -> None:
    """The one check of a Redis URL, for the settings and for the URLs given to
    ``ConnectionManager(redis_url=...)`` and ``build_layer()``.

    Raises:
        ConfigurationError: If ``url`` is not a ``redis://``, ``rediss://``,
            ``unix://``, ``redis+cluster://`` or ``rediss+cluster://`` URL; it names
            ``name``.
    """
    if not isinstance(url, str) or not url.startswith(REDIS_SCHEMES):
        raise ConfigurationError(
            name, url, "a redis://, rediss://, unix://, redis+cluster:// or rediss+cluster:// URL"
        )


def check_server_url(url: str, name: str) -> None:
    """:func:`check_redis_url` for a setting that takes one Redis server, not a Cluster
    (``presence_redis_url``: presence's scripts need one server's keys).

    Raises:
        ConfigurationError: If ``url`` is not a ``redis://``, ``rediss://`` or
            ``unix://`` URL; it names ``name``.
    """
    if not isinstance(url, str) or not url.startswith(SERVER_SCHEMES):
        raise ConfigurationError(name, url, "a redis://, rediss:// or unix:// URL of one Redis")


def sentinel_hosts(value: str, name: str = "redis_sentinels") -> list[tuple[str, int]]:
    """``"host:port,host:port"`` as [(host, port), ...].

    Raises:
        ConfigurationError: If an entry is not ``host:port``.
    """
    pairs = []
    for item in value.split(","):
        host, _, port = item.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ConfigurationError(name, value, "host:port[,host:port...]")
        pairs.append((host, int(port)))
    return pairs


def _parse_bool(raw: str, name: str) -> bool:
    word = raw.strip().lower()
    if word in _TRUE_WORDS:
        return True
    if word in _FALSE_WORDS:
        return False
    raise ConfigurationError(name, raw, "true/false, yes/no, on/off or 1/0")


@dataclass(frozen=True, slots=True)
class _Spec:
    """How one field is parsed from text and which values it accepts."""

    parse: Callable[[str, str], Any]
    kind: str  # "float", "int", "bool" or "str"
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    optional: bool = False
    choices: tuple[str, ...] = ()
    #: Checks a value further (a URL's scheme, a host list); raises ConfigurationError.
    extra: Callable[[Any, str], Any] | None = None

    def expected(self) -> str:
        text = {
            "float": "a number",
            "int": "a whole number",
            "bool": "a boolean",
            "str": "a non-empty string",
        }[self.kind]
        if self.minimum is not None:
            text += f" {'>' if self.exclusive_minimum else '>='} {self.minimum:g}"
        if self.maximum is not None:
            text += f" and <= {self.maximum:g}"
        if self.choices:
            text = "one of " + ", ".join(self.choices)
        if self.optional:
            text += ", or None"
        return text

    def check(self, value: Any, name: str) -> None:
        if value is None and self.optional:
            return
        ok_type = {
            # bool is an int subclass; True is never a valid timeout or size.
            "float": isinstance(value, int | float) and not isinstance(value, bool),
            "int": isinstance(value, int) and not isinstance(value, bool),
            "bool": isinstance(value, bool),
            "str": isinstance(value, str) and value != "",
        }[self.kind]
        if not ok_type or (self.kind == "float" and not math.isfinite(value)):
            raise ConfigurationError(name, value, self.expected())
        if self.minimum is not None and (
            value < self.minimum or (self.exclusive_minimum and value == self.minimum)
        ):
            raise ConfigurationError(name, value, self.expected())
        if self.maximum is not None and value > self.maximum:
            raise ConfigurationError(name, value, self.expected())
        if self.choices and value not in self.choices:
            raise ConfigurationError(name, value, self.expected())
        if self.extra is not None:
            self.extra(value, name)


_SPECS: dict[str, _Spec] = {
    "open_timeout": _Spec(_parse_float, "float", minimum=0, exclusive_minimum=True),
    "close_timeout": _Spec(_parse_float, "float", minimum=0),
    "ping_interval": _Spec(
        _parse_optional_float, "float", minimum=0, exclusive_minimum=True, optional=True
    ),
    "ping_timeout": _Spec(
        _parse_optional_float, "float", minimum=0, exclusive_minimum=True, optional=True
    ),
    "max_message_size": _Spec(_parse_int, "int", minimum=0, exclusive_minimum=True),
    "max_queue_size": _Spec(_parse_int, "int", minimum=0, exclusive_minimum=True),
    "reconnect_enabled": _Spec(_parse_bool, "bool"),
    "reconnect_max_attempts": _Spec(_parse_int, "int", minimum=0),
    "reconnect_backoff_base": _Spec(_parse_float, "float", minimum=0),
    "reconnect_backoff_max": _Spec(_parse_float, "float", minimum=0),
    "reconnect_jitter": _Spec(_parse_float, "float", minimum=0, maximum=1),
    "outbox_limit": _Spec(_parse_int, "int", minimum=0, exclusive_minimum=True),
    "channel_prefix": _Spec(_parse_str, "str"),
    "redis_url": _Spec(_parse_optional_str, "str", optional=True, extra=check_redis_url),
    "presence_redis_url": _Spec(_parse_optional_str, "str", optional=True, extra=check_server_url),
    "redis_layer": _Spec(_parse_choice, "str", choices=("core", "pubsub")),
    "redis_sentinels": _Spec(_parse_optional_str, "str", optional=True, extra=sentinel_hosts),
    "redis_sentinel_master": _Spec(_parse_str, "str"),
    # Heartbeats run every ttl/4: below half a second they would flood Redis.
    "presence_ttl": _Spec(_parse_float, "float", minimum=0.5),
    "presence_mode": _Spec(_parse_choice, "str", choices=("mirror", "index")),
    "history_size": _Spec(_parse_int, "int", minimum=0),
    "history_ttl": _Spec(_parse_float, "float", minimum=0, exclusive_minimum=True),
    "history_meta_ttl": _Spec(_parse_float, "float", minimum=0, exclusive_minimum=True),
    "room_grace": _Spec(_parse_float, "float", minimum=0),
    "close_on_token_expiry": _Spec(_parse_bool, "bool"),
    "inbound_rate": _Spec(_parse_float, "float", minimum=0),
    "inbound_burst": _Spec(_parse_int, "int", minimum=0),
    "max_connections_per_user": _Spec(_parse_int, "int", minimum=0),
    "cap_policy": _Spec(_parse_choice, "str", choices=("refuse", "newest")),
    "drain_batch": _Spec(_parse_int, "int", minimum=0, exclusive_minimum=True),
    "drain_interval": _Spec(_parse_float, "float", minimum=0),
    "drain_timeout": _Spec(_parse_float, "float", minimum=0, exclusive_minimum=True),
    "drain_notice": _Spec(_parse_optional_str, "str", optional=True),
    "relay_poll_interval": _Spec(_parse_float, "float", minimum=0.0, exclusive_minimum=True),
    "relay_batch": _Spec(_parse_int, "int", minimum=1),
    "relay_retention": _Spec(_parse_float, "float", minimum=0.0),
    "relay_in_process": _Spec(_parse_bool, "bool"),
}
