"""Django: the process's manager's Prometheus metrics at ``/metrics`` (the ``metrics`` extra).

In ``urls.py``::

    path("", include("svc_infra.websocket.djangoapp.metrics")),
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import path

from ..metrics import instrument
from . import get_process_manager

__all__ = ["metrics_view", "urlpatterns"]


async def metrics_view(request: HttpRequest) -> HttpResponse:
    """The metrics in Prometheus' text format (synced now, then once a second)."""
    metrics = instrument(get_process_manager())
    metrics.start()
    body, content_type = metrics.render()
    return HttpResponse(body, content_type=content_type)


urlpatterns = [path("metrics", metrics_view, name="svc-infra-ws-metrics")]
