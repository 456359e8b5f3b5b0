"""One FastAPI process on a non-Redis Channels layer: ``/ws/{user}`` plus ``/ctl/<op>``.

The README pattern: the manager is created at import time, before any event loop
runs (``uvicorn tests.apps.other_layers:app``), with ``layer=make_layer``, a
function the manager calls when it first needs the layer, on the running loop.
``OTHER_LAYER`` picks channels_postgres or channels_rabbitmq (see
``other_layers_config.py``); the other settings are ``WS_*`` variables
(``WS_PRESENCE_REDIS_URL``, ``WS_PRESENCE_TTL``, ``WS_HISTORY_SIZE``,
``WS_CHANNEL_PREFIX``) and ``CLUSTER_NAME``. The same surface as
``cluster_fastapi.py``, so the tests drive it with ``Server.ctl`` and ``stats``.
"""

from __future__ import annotations

from fastapi import FastAPI

from svc_infra.websocket import ConnectionManager, add_websocket_manager
from tests.apps.cluster_fastapi import serve
from tests.apps.other_layers_config import make_layer

app = FastAPI()
manager = add_websocket_manager(app, ConnectionManager(layer=make_layer))
serve(app, manager)
