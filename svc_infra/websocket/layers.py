"""Deprecated: import these from :mod:`svc_infra.websocket.scaleout.layers`.

Importing a name from here still works, with a ``DeprecationWarning``.
"""

from ._deprecated import moved

__all__: list[str] = []

__getattr__ = moved(
    __name__,
    "svc_infra.websocket.scaleout.layers",
    ["REDIS_HOST_DEFAULTS", "build_layer", "redis_host", "with_redis_defaults"],
)
