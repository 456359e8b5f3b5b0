"""Prometheus metrics of an outbox relay (the ``metrics`` extra).

``svc_infra_ws_outbox_pending``, ``svc_infra_ws_outbox_oldest_pending_seconds`` and
``svc_infra_ws_outbox_failing`` (rows that failed ``FAILING_AFTER`` times or more:
kept and retried) as the relay last read them (every 30 s); the counters
``svc_infra_ws_outbox_published`` and ``svc_infra_ws_outbox_retried`` as they go.
``ws_outbox --metrics-port 9108`` serves them; a relay in the server process
(``WS_RELAY_IN_PROCESS``) adds them to the process's ``/metrics``.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge

__all__ = ["RelayMetrics"]


class RelayMetrics:
    """The metrics of one relay, synced from its :class:`~.relay.RelayStats`.

    Args:
        relay: The :class:`~.relay.OutboxRelay` (its ``metrics`` is set to this
            object: it syncs after each round).
        registry: prometheus_client's default registry if None.
    """

    # relay is an OutboxRelay: not imported here, as the relay imports this module
    # when it runs in the server process (no import cycle).
    def __init__(self, relay: Any, registry: CollectorRegistry | None = None) -> None:
        r = REGISTRY if registry is None else registry
        self.stats = relay.stats
        self.pending = Gauge(
            "svc_infra_ws_outbox_pending",
            "Outbox rows waiting.",
            registry=r,
            multiprocess_mode="max",
        )
        self.oldest = Gauge(
            "svc_infra_ws_outbox_oldest_pending_seconds",
            "Seconds the oldest waiting outbox row has waited.",
            registry=r,
            multiprocess_mode="max",
        )
        self.failing = Gauge(
            "svc_infra_ws_outbox_failing",
            "Outbox rows whose publication failed repeatedly (kept, retried).",
            registry=r,
            multiprocess_mode="max",
        )
        self.published = Counter(
            "svc_infra_ws_outbox_published", "Outbox rows published.", registry=r
        )
        self.retried = Counter(
            "svc_infra_ws_outbox_retried", "Outbox publications that failed (retried).", registry=r
        )
        self._published = self._retried = 0  # the counts at the last sync
        relay.metrics = self

    def sync(self) -> None:
        """Copy what changed since the last sync."""
        stats = self.stats
        self.published.inc(stats.published - self._published)
        self.retried.inc(stats.retried - self._retried)
        self._published, self._retried = stats.published, stats.retried
        self.pending.set(stats.pending)
        self.oldest.set(stats.oldest_pending_age)
        self.failing.set(stats.failing)
