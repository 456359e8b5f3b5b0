"""ASGI entry point: HTTP through Django, WebSocket through Channels, and the worker."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
# Initialise Django (apps, settings) before importing anything that uses models.
django_asgi_app = get_asgi_application()

from django.conf import settings  # noqa: E402

if settings.DEBUG:
    # Static files (the browser client) under any ASGI server, as runserver serves
    # them; a deployment serves them with collectstatic and its web server.
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    django_asgi_app = ASGIStaticFilesHandler(django_asgi_app)

from channels.routing import ChannelNameRouter, ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from svc_infra.websocket.djangoapp.auth import JWTAuthMiddlewareStack  # noqa: E402
from svc_infra.websocket.djangoapp.workers import NOTIFY_CHANNEL, NotifyWorker  # noqa: E402

from .routing import websocket_urlpatterns  # noqa: E402

# Origins first (cross-site WebSocket hijacking), then the JWT from the query,
# the Authorization header or the ["bearer", token] subprotocol.
application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(
            JWTAuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
        # manage.py runworker ws-notify
        "channel": ChannelNameRouter({NOTIFY_CHANNEL: NotifyWorker.as_asgi()}),
    }
)
