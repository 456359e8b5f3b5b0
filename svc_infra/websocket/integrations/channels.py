"""The documented import path of the Channels consumers (re-exported).

The Django and Channels glue lives in :mod:`svc_infra.websocket.djangoapp`; see
:mod:`svc_infra.websocket.djangoapp.consumers`.
"""

from ..djangoapp.consumers import (
    ChannelsTransport,
    ManagedJsonWebsocketConsumer,
    ManagedWebsocketConsumer,
)

__all__ = ["ChannelsTransport", "ManagedJsonWebsocketConsumer", "ManagedWebsocketConsumer"]
