"""One Django (Channels) process of the cluster tests, for Daphne.

The same surface as ``cluster_fastapi.py``: a ``ManagedWebsocketConsumer`` at
``/ws/<user>`` and ``/ctl/<op>`` views on the process's manager. ``CHANNEL_LAYERS``
comes from ``channel_layers_from_env()`` (``WS_REDIS_URL``, ``WS_REDIS_LAYER``).
"""

from __future__ import annotations

import json
import os
from typing import Any

import django
from django.conf import settings

from svc_infra.websocket.djangoapp import channel_layers_from_env

if not settings.configured:
    if os.environ.get("OTHER_LAYER"):
        # channels_postgres or channels_rabbitmq (tests/apps/other_layers_config.py):
        # a backend the library does not recognise, so get_process_manager() builds
        # it when first needed, on the running loop.
        from tests.apps import other_layers_config as other

        apps, layers, databases = other.installed_apps(), other.channel_layers(), other.databases()
    else:
        apps, layers, databases = [], channel_layers_from_env(), {}
    settings.configure(
        DEBUG=False,
        SECRET_KEY="cluster-test",
        ALLOWED_HOSTS=["*"],
        INSTALLED_APPS=["svc_infra.websocket.djangoapp", "channels", *apps],
        ROOT_URLCONF=__name__,
        CHANNEL_LAYERS=layers,
        DATABASES=databases,
        USE_TZ=True,
    )
    django.setup()

from channels.routing import ProtocolTypeRouter, URLRouter
from django.core.asgi import get_asgi_application
from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from svc_infra.websocket.djangoapp import get_process_manager
from svc_infra.websocket.djangoapp.consumers import ManagedWebsocketConsumer
from tests.apps.cluster_control import NAME, control


class Socket(ManagedWebsocketConsumer):
    async def get_user_id(self) -> str | None:
        return str(self.scope["url_route"]["kwargs"]["user"])

    def get_metadata(self) -> dict[str, Any]:
        return {"server": NAME}

    async def connected(self) -> None:
        from urllib.parse import parse_qs

        query = parse_qs(bytes(self.scope.get("query_string") or b"").decode())
        if query.get("room"):  # as the spec's chat route: join right after connecting
            await self.manager.join_room(self.user_id, query["room"][0])


async def root(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"name": NAME})


@csrf_exempt
async def ctl(request: HttpRequest, op: str) -> JsonResponse:
    manager = get_process_manager()
    await manager.start()  # an HTTP request may come before any socket
    if request.method == "GET":
        body: dict[str, Any] = dict(request.GET.items())
    else:
        body = json.loads(request.body or b"{}")
    status, answer = await control(manager, op, body)
    return JsonResponse(answer, status=status, safe=False)


urlpatterns = [path("", root), path("ctl/<str:op>", ctl)]

application = ProtocolTypeRouter(
    {
        "http": get_asgi_application(),
        "websocket": URLRouter([path("ws/<str:user>", Socket.as_asgi())]),
    }
)
