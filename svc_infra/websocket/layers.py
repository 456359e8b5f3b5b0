"""Building the channel layer a manager delivers through.

Imports Channels (and so Django) only when a layer is built, never at import.
"""

from __future__ import annotations

import fnmatch
import re
import sys
from typing import Any

from .exceptions import ConfigurationError

__all__ = ["MANAGER_CHANNEL_CAPACITY", "build_layer", "reserve_capacity"]

# A manager's own channel carries every message for this process. Channels'
# default of 100 would drop bursts silently (group_send never raises when full).
MANAGER_CHANNEL_CAPACITY = 10_000

_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def build_layer(*, redis_url: str | None = None) -> Any:
    """Return the layer for a manager built without one.

    - ``redis_url`` set: a ``channels_redis`` ``RedisChannelLayer`` on it;
    - else, Django configured with ``CHANNEL_LAYERS``: its ``default`` layer;
    - else: a new ``InMemoryChannelLayer`` (this process only).

    Raises:
        ConfigurationError: If the URL is not a Redis URL, or ``channels-redis``
            is not installed.
    """
    if redis_url:
        if not redis_url.startswith(_REDIS_SCHEMES):
            raise ConfigurationError("redis_url", redis_url, "a redis://, rediss:// or unix:// URL")
        try:
            from channels_redis.core import RedisChannelLayer
        except ImportError:  # pragma: no cover - depends on the installation
            raise ConfigurationError(
                "redis_url", redis_url, "channels-redis installed (the 'redis' extra)"
            ) from None
        return RedisChannelLayer(hosts=[redis_url])
    django_layer = _django_default_layer()
    if django_layer is not None:
        return django_layer
    from channels.layers import InMemoryChannelLayer

    return InMemoryChannelLayer()


def _django_default_layer() -> Any:
    if "django.conf" not in sys.modules:
        return None  # a FastAPI app that never imported Django
    from django.conf import settings

    if not settings.configured or not getattr(settings, "CHANNEL_LAYERS", None):
        return None
    from channels.layers import get_channel_layer

    return get_channel_layer()


def reserve_capacity(layer: Any, pattern: str, capacity: int = MANAGER_CHANNEL_CAPACITY) -> None:
    """Give channels matching the glob ``pattern`` their own capacity on ``layer``.

    Channels layers look capacities up in ``layer.channel_capacity``, a list of
    ``(regex, capacity)`` pairs, first match wins. Layers without it are left as
    they are.
    """
    table = getattr(layer, "channel_capacity", None)
    if not isinstance(table, list):
        return
    regex = re.compile(fnmatch.translate(pattern))
    if not any(getattr(p, "pattern", None) == regex.pattern for p, _ in table):
        table.insert(0, (regex, capacity))
