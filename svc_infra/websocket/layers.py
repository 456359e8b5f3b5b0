"""The documented import path of the Redis host helpers (re-exported).

They live in :mod:`svc_infra.websocket.scaleout.layers`.
"""

from .scaleout.layers import REDIS_HOST_DEFAULTS, build_layer, redis_host, with_redis_defaults

__all__ = ["REDIS_HOST_DEFAULTS", "build_layer", "redis_host", "with_redis_defaults"]
