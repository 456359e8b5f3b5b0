"""Framework glue for Starlette and FastAPI (Django's is in :mod:`svc_infra.websocket.djangoapp`).

- :mod:`.starlette`: the socket adapter, ``add_websocket_manager``, ``get_ws_manager``.
- :mod:`.channels`: the documented import path of the Channels consumers, which
  live in :mod:`svc_infra.websocket.djangoapp.consumers` (re-exported).
"""
