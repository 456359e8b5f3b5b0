"""``runworker`` that refuses an in-memory layer, then runs Channels' own."""

from __future__ import annotations

from typing import Any

from channels.layers import InMemoryChannelLayer, get_channel_layer
from channels.management.commands.runworker import Command as ChannelsRunworker
from django.core.management.base import CommandError


class Command(ChannelsRunworker):  # type: ignore[misc]
    help = "Run a Channels worker (needs a layer shared between processes, such as Redis)."

    def handle(self, *args: Any, **options: Any) -> None:
        layer = get_channel_layer(options.get("layer") or "default")
        if isinstance(layer, InMemoryChannelLayer):
            raise CommandError(
                "runworker needs a channel layer shared between processes: the in-memory "
                "layer only reaches this process. Set WS_REDIS_URL (or CHANNEL_LAYERS) "
                "to a channels_redis layer."
            )
        super().handle(*args, **options)
