"""Framework glue for Starlette and FastAPI (Django's is in :mod:`svc_infra.websocket.djangoapp`).

- :mod:`.starlette`: the socket adapter, ``add_websocket_manager``, ``get_ws_manager``.
- :mod:`.channels`: a deprecated path of the Channels consumers, whose home is
  :mod:`svc_infra.websocket.djangoapp.consumers`.
"""
