"""The server core: the parts the :class:`~svc_infra.websocket.ConnectionManager` is made of.

Framework-free and Redis-free; see ``docs/development.md`` ("Architecture").

Public here (for custom transports and tests): :class:`Transport`,
:func:`register_transport`, :class:`ManagerStats`, :data:`CLOSE_SLOW_CONSUMER`.
The modules with a leading underscore are the manager's parts: internal.
"""

from .connection import CLOSE_SLOW_CONSUMER
from .stats import ManagerStats
from .transport import Transport, register_transport

__all__ = ["CLOSE_SLOW_CONSUMER", "ManagerStats", "Transport", "register_transport"]
