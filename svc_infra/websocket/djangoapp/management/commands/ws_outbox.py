"""``ws_outbox``: publish committed outbox rows until SIGTERM (see ``docs/outbox.md``)."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    help = (
        "Publish the rows written by svc_infra.websocket.djangoapp.outbox once their "
        "transaction commits, until SIGTERM or SIGINT (the batch in hand is finished)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--database", default="default", help="the outbox's database alias")
        parser.add_argument(
            "--layer", default="default", help="the CHANNEL_LAYERS alias to publish through"
        )
        parser.add_argument(
            "--metrics-port",
            type=int,
            default=None,
            help="serve the relay's Prometheus metrics on this port (the metrics extra)",
        )
        parser.add_argument(
            "--metrics-addr", default="127.0.0.1", help="the address of --metrics-port"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        metrics = options["metrics_port"], options["metrics_addr"]
        asyncio.run(self._run(options["database"], options["layer"], metrics))

    async def _run(self, using: str, alias: str, metrics: tuple[int | None, str]) -> None:
        from channels.layers import InMemoryChannelLayer

        from ... import get_process_manager
        from ...relay import OutboxRelay

        manager = get_process_manager(alias)
        if isinstance(manager.ops.layer, InMemoryChannelLayer):
            raise CommandError(
                "ws_outbox needs a channel layer shared between processes: the in-memory "
                "layer only reaches this process. Set WS_REDIS_URL (or CHANNEL_LAYERS), "
                "or run the relay in the server process (WS_RELAY_IN_PROCESS=true)."
            )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        relay = OutboxRelay(manager, using=using)
        port, addr = metrics
        if port is not None:
            from prometheus_client import start_http_server

            from ...outbox_metrics import RelayMetrics

            RelayMetrics(relay)
            start_http_server(port, addr=addr)
        self.stdout.write(f"ws_outbox: publishing from {using!r} through {alias!r}")
        self.stdout.flush()
        try:
            await relay.run(stop)
        finally:
            await manager.shutdown()
        self.stdout.write(f"ws_outbox: stopped after {relay.stats.published} messages")
