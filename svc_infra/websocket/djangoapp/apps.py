"""The Django app of svc_infra.websocket (its ``runworker`` command)."""

from django.apps import AppConfig


class WebSocketConfig(AppConfig):
    name = "svc_infra.websocket.djangoapp"
    label = "svc_infra_websocket"
    verbose_name = "svc_infra WebSocket"
