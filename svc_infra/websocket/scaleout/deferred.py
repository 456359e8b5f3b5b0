"""A Channels layer built when first needed, on the running event loop.

Some layers refuse to exist outside a running loop (channels_rabbitmq: "Refusing
to initialize channel layer without a running event loop"), and some bind to the
loop they were built on (channels_postgres' listener). A manager is usually
created at import time (``manager = ConnectionManager()`` in ``main.py``, then
``uvicorn main:app``), or in a sync Django view's thread, where there is no loop.
:class:`DeferredLayer` stands in for such a layer: it holds how to build it, and
builds it on the first call that needs it, which is a coroutine, so on the loop
that serves the manager.

It implements the Channels layer interface by delegation; everything else is
read from the built layer (an ``AttributeError`` before it is built).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

__all__ = ["DeferredLayer", "channels_default_layer"]

#: Django ``CHANNEL_LAYERS`` backends built at once: none of them needs a loop.
EAGER_BACKENDS = frozenset(
    {
        "channels.layers.InMemoryChannelLayer",
        "channels_redis.core.RedisChannelLayer",
        "channels_redis.pubsub.RedisPubSubChannelLayer",
        "svc_infra.websocket.scaleout.RedisClusterChannelLayer",
        "svc_infra.websocket.scaleout.cluster.RedisClusterChannelLayer",
    }
)


class DeferredLayer:
    """A Channels layer made by ``factory()`` on the first call that needs it.

    Args:
        factory: Returns the layer; called once, inside the running loop.
        name: What the layer is, for messages (a backend path, a function name).

    The manager treats it as a layer of unknown kind (as any layer it does not
    recognise): pass a channels_redis layer itself, not a factory of one, to keep
    its optimisations.
    """

    extensions = ("groups", "flush")

    def __init__(self, factory: Callable[[], Any], name: str = "") -> None:
        self._factory = factory
        self._layer: Any = None
        self.name = name or getattr(factory, "__qualname__", repr(factory))
        # Capacities reserved before the layer existed (see reserve_capacity).
        self.channel_capacity: list[tuple[re.Pattern[str], int]] = []

    @property
    def built(self) -> bool:
        """Whether the layer exists yet."""
        return self._layer is not None

    def get(self) -> Any:
        """The layer, built now if it was not (call it on the running loop).

        Raises:
            Exception: Whatever the factory raises.
        """
        if self._layer is None:
            layer = self._factory()
            table = getattr(layer, "__dict__", {}).get("channel_capacity")
            if isinstance(table, list):
                known = {getattr(p, "pattern", None) for p, _ in table}
                table[:0] = [(p, c) for p, c in self.channel_capacity if p.pattern not in known]
            self._layer = layer
        return self._layer

    def __getattr__(self, name: str) -> Any:
        # Only for names not defined here: the built layer's own attributes.
        layer = self.__dict__.get("_layer")
        if layer is None:
            raise AttributeError(f"{name!r}: the layer {self.name} is not built yet")
        return getattr(layer, name)

    def __repr__(self) -> str:
        state = repr(self._layer) if self._layer is not None else "not built"
        return f"<DeferredLayer {self.name}: {state}>"

    # --- the Channels layer interface, delegated ---------------------------------------

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        await self.get().send(channel, message)

    async def receive(self, channel: str) -> dict[str, Any]:
        message: dict[str, Any] = await self.get().receive(channel)
        return message

    async def new_channel(self, prefix: str = "specific.") -> str:
        return str(await self.get().new_channel(prefix=prefix))

    async def group_add(self, group: str, channel: str) -> None:
        await self.get().group_add(group, channel)

    async def group_discard(self, group: str, channel: str) -> None:
        await self.get().group_discard(group, channel)

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        await self.get().group_send(group, message)

    async def flush(self) -> None:
        if self._layer is not None:
            await self._layer.flush()

    async def close(self) -> None:
        """Close the built layer, if it has a ``close()`` (nothing was built: nothing to do)."""
        close = getattr(self._layer, "close", None)
        if close is not None:
            await close()


def channels_default_layer(alias: str = "default") -> Any:
    """Django's ``CHANNEL_LAYERS[alias]``: the layer itself for a backend that needs
    no loop (:data:`EAGER_BACKENDS`), a :class:`DeferredLayer` for any other, None
    when there is no such alias."""
    from channels.layers import get_channel_layer
    from django.conf import settings

    config = getattr(settings, "CHANNEL_LAYERS", None) or {}
    if alias not in config:
        return None
    backend = str(config[alias].get("BACKEND", ""))
    if backend in EAGER_BACKENDS:
        return get_channel_layer(alias)
    # get_channel_layer() keeps the layer it builds: later calls return that one.
    return DeferredLayer(lambda: get_channel_layer(alias), backend)
