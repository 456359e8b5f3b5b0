"""Prometheus metrics of a :class:`~svc_infra.websocket.ConnectionManager` (the ``metrics`` extra).

Nothing here runs on the delivery path. The manager already counts what it does in
:class:`~svc_infra.websocket.ManagerStats` (plain integers, per fan-out, not per
frame); :meth:`ManagerMetrics.sync` copies what changed into prometheus_client
metrics, on every scrape and once a second (so that prometheus_client's
multiprocess mode, which reads files the workers write, stays current). The one
thing measured live is the publish time, once per published message.

::

    from svc_infra.websocket.metrics import instrument

    metrics = instrument(manager)          # once per process
    body, content_type = metrics.render()  # what GET /metrics answers

FastAPI: :func:`svc_infra.websocket.integrations.starlette.add_metrics_route`.
Django: ``path("", include("svc_infra.websocket.djangoapp.metrics"))``.
Several processes (``uvicorn --workers N``, several Daphnes): set
``PROMETHEUS_MULTIPROC_DIR`` to an empty directory before they start; each process
writes its values there and any of them answers for all (``docs/metrics.md``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from .auth.core import REFUSALS
from .manager import ConnectionManager
from .server.stats import PUBLISH_BUCKETS

__all__ = ["ManagerMetrics", "instrument"]

#: Seconds between two syncs in the background (for multiprocess mode).
SYNC_INTERVAL = 1.0
_LIMITED = {
    "size": "limited_size",
    "rate": "limited_rate",
    "connections": "limited_connections",
    "expired": "limited_expired",
}
_PUBLISHED = {
    "user": "published_user",
    "room": "published_room",
    "broadcast": "published_broadcast",
}
_COUNTERS = {
    "svc_infra_ws_frames_sent": ("frames_queued", "Frames written (queued) to sockets."),
    "svc_infra_ws_bytes_sent": ("bytes_queued", "Bytes of the frames written (queued) to sockets."),
    "svc_infra_ws_messages_received": ("messages_received", "Messages received from clients."),
    "svc_infra_ws_slow_consumer_evictions": ("slow_consumers", "Connections closed as slow."),
    "svc_infra_ws_layer_errors": ("layer_errors", "Errors talking to the channel layer."),
    "svc_infra_ws_messages_lost": ("messages_lost", "Messages other processes never got."),
    "svc_infra_ws_connections_opened": ("connections_opened", "Connections opened."),
}


class ManagerMetrics:
    """The ``svc_infra_ws_*`` metrics of one manager, in a prometheus_client registry.

    Args:
        manager: The manager to export (one per process).
        registry: Where the metrics live; prometheus_client's default registry if None.
    """

    def __init__(
        self, manager: ConnectionManager, registry: CollectorRegistry | None = None
    ) -> None:
        self.manager = manager
        self.registry = REGISTRY if registry is None else registry
        r = self.registry
        # Per process: summed over the live processes in multiprocess mode.
        self.connections = Gauge(
            "svc_infra_ws_connections",
            "Open connections, this process.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.users = Gauge(
            "svc_infra_ws_users",
            "Users with a connection, this process.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.rooms = Gauge(
            "svc_infra_ws_rooms",
            "Rooms with a member, this process.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.cluster = Gauge(
            "svc_infra_ws_cluster_connections",
            "Open connections, all processes (with Redis presence).",
            registry=r,
            multiprocess_mode="max",
        )
        self.counters = {
            name: Counter(name, doc, registry=r) for name, (_, doc) in _COUNTERS.items()
        }
        self.closed = Counter(
            "svc_infra_ws_connections_closed", "Connections closed.", ["code"], registry=r
        )
        self.published = Counter(
            "svc_infra_ws_messages_published", "Messages published.", ["target"], registry=r
        )
        self.refusals = Counter(
            "svc_infra_ws_auth_refusals", "Handshakes refused by auth.", ["reason"], registry=r
        )
        self.limited = Counter(
            "svc_infra_ws_limited", "Connections ended by a limit.", ["reason"], registry=r
        )
        self.recoveries = Counter(
            "svc_infra_ws_recoveries", "Reconnects that asked for recovery.", ["result"], registry=r
        )
        self.publish_seconds = Histogram(
            "svc_infra_ws_publish_seconds",
            "Time to publish one message (record, local fan-out, layer).",
            ["target"],
            buckets=PUBLISH_BUCKETS,
            registry=r,
        )
        self._timers = {t: self.publish_seconds.labels(t) for t in _PUBLISHED}
        self._seen: dict[tuple[str, str], float] = {}
        self._task: asyncio.Task[None] | None = None
        manager.ops.timings = self

    # --- the manager's PublishTimer ----------------------------------------------------

    def observe(self, target: str, seconds: float) -> None:
        timer = self._timers.get(target)
        if timer is not None:
            timer.observe(seconds)

    # --- syncing ----------------------------------------------------------------------

    def _add(self, counter: Any, key: tuple[str, str], total: float) -> None:
        delta = total - self._seen.get(key, 0)
        if delta > 0:
            counter.inc(delta)
            self._seen[key] = total

    def sync(self) -> None:
        """Copy what the manager counted since the last sync into the metrics."""
        m = self.manager
        stats = m.stats
        self.connections.set(m.local_connection_count)
        self.users.set(len(m._registry.users))
        self.rooms.set(len(m._registry.rooms))
        self.cluster.set(m.connection_count)
        for name, (field, _) in _COUNTERS.items():
            self._add(self.counters[name], (name, ""), getattr(stats, field))
        for code, n in list(m._connections.closed_codes.items()):
            self._add(self.closed.labels(str(code)), ("closed", str(code)), n)
        for target, field in _PUBLISHED.items():
            self._add(self.published.labels(target), ("published", target), getattr(stats, field))
        for reason, field in _LIMITED.items():
            self._add(self.limited.labels(reason), ("limited", reason), getattr(stats, field))
        for reason, n in list(REFUSALS.items()):
            self._add(self.refusals.labels(reason), ("refused", reason), n)
        for result, n in m._recovery.results.items():
            self._add(self.recoveries.labels(result), ("recovery", result), n)

    def start(self) -> None:
        """Sync once a second in the background (needs a running loop; once)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            self.sync()
            await asyncio.sleep(SYNC_INTERVAL)

    async def stop(self) -> None:
        """Stop the background sync."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def render(self) -> tuple[bytes, str]:
        """The metrics in Prometheus' text format, and its content type: this
        process's, or every process's under ``PROMETHEUS_MULTIPROC_DIR``."""
        self.sync()
        registry = self.registry
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST


_instruments: dict[int, ManagerMetrics] = {}


def instrument(
    manager: ConnectionManager, registry: CollectorRegistry | None = None
) -> ManagerMetrics:
    """The metrics of ``manager``, created on the first call (metric names are
    process-wide: one instrumented manager per registry)."""
    metrics = _instruments.get(id(manager))
    if metrics is None:
        metrics = _instruments[id(manager)] = ManagerMetrics(manager, registry)
    return metrics
