"""The one place that reaches below channels_redis' public layer API.

The Channels layer specification (send, receive, group_add, group_send, ...) is
too slow for a manager's traffic on Redis: ``receive()`` costs four round trips
per message, and a connect storm makes one ``group_add`` round trip per socket.
For speed we use what channels_redis does not document as API, all of it here:

- which shard holds a channel or group (``consistent_hash``), and its client
  (``connection(index)``);
- the key layout: a plain channel is a sorted set at ``prefix + name`` of
  serialized messages (``deserialize``; the ``__asgi_channel__`` field stripped),
  a group a sorted set of channels scored by join time (``_group_key``);
- the pub/sub layer's constructor arguments, which it keeps only as ``_args`` and
  ``_kwargs`` (it builds one inner layer per event loop from them).

``tests/websocket/scaleout/test_compat_channels_redis.py`` pins each of these on
the installed channels_redis and a real Redis, so a release that changes them
fails our CI, not a user's deploy.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "channel_key",
    "decode_message",
    "group_key",
    "pubsub_arguments",
    "shard_client",
    "shard_of",
]


def shard_of(layer: Any, name: str) -> int:
    """The index of the Redis host a core layer keeps ``name`` (channel or group) on."""
    index: int = layer.consistent_hash(name)
    return index


def shard_client(layer: Any, index: int) -> Any:
    """The core layer's redis-py client for host ``index`` (of the running loop)."""
    return layer.connection(index)


def channel_key(layer: Any, channel: str) -> str:
    """The sorted set a core layer queues a plain channel's messages in."""
    return f"{layer.prefix}{channel}"


def group_key(layer: Any, group: str) -> str:
    """The sorted set of a core layer's group: its channels, scored by join time."""
    key: str = layer._group_key(group)
    return key


def decode_message(layer: Any, member: bytes) -> dict[str, Any]:
    """A message taken from :func:`channel_key`'s sorted set, as ``receive()`` gives it."""
    message: dict[str, Any] = layer.deserialize(member)
    message.pop("__asgi_channel__", None)
    return message


def pubsub_arguments(layer: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The positional and keyword arguments a ``RedisPubSubChannelLayer`` was built with.

    Read from the instance's own ``__dict__``, not with ``getattr``: the layer
    forwards unknown attributes to its per-loop inner layer.
    """
    state = vars(layer)
    return tuple(state["_args"]), dict(state["_kwargs"])
