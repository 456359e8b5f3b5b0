"""Sent if and only if the transaction commits: the transactional outbox.

Call these where you would call the manager's verbs, inside the transaction that
changes the data they announce::

    from django.db import transaction
    from svc_infra.websocket.djangoapp import outbox

    with transaction.atomic():
        order.paid = True
        order.save()
        outbox.send_to_user(order.user_id, {"type": "order.paid", "id": order.id})

Each call writes one row (:class:`~.models.OutboxMessage`) in the caller's current
transaction, or at once under autocommit. A rolled-back transaction leaves nothing
to send; a committed one is published by the relay (``python manage.py
ws_outbox``, or in the server process: ``WS_RELAY_IN_PROCESS``), in commit order
per target, with an id that makes a second publication reach no socket twice.
On PostgreSQL the row also notifies the relay (``NOTIFY``, delivered at commit).

The payload rules are the manager's: ``dict``/``list`` as JSON text, ``str`` as
text, ``bytes`` as binary; anything else raises ``TypeError`` here, inside the
transaction, never in the relay. The ``a``-prefixed twins are for async views.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.db import connections

from .. import layer_messages as lm
from ..groups import user_key

__all__ = [
    "NOTIFY_CHANNEL",
    "abroadcast",
    "abroadcast_to_room",
    "asend_to_user",
    "broadcast",
    "broadcast_to_room",
    "send_to_user",
]

#: The PostgreSQL ``NOTIFY`` channel the relay listens on.
NOTIFY_CHANNEL = "svc_infra_ws_outbox"


def send_to_user(user_id: Any, message: Any, *, using: str = "default") -> int:
    """Send ``message`` to every connection of ``user_id`` once the transaction
    commits. Returns the row's id.

    Raises:
        TypeError: If the message cannot be carried (as ``send_to_user``), or
            ``user_id`` is of the wrong type.
    """
    return _write("user", user_key(user_id), message, None, using)


def broadcast_to_room(
    room: str, message: Any, exclude_user: Any = None, *, using: str = "default"
) -> int:
    """Send ``message`` to the room's members (except ``exclude_user``) once the
    transaction commits. Returns the row's id.

    Raises:
        TypeError: If the message cannot be carried, or ``room`` is not a ``str``.
    """
    if not isinstance(room, str):
        raise TypeError(f"room must be str, not {type(room).__name__}")
    exclude = None if exclude_user is None else user_key(exclude_user)
    return _write("room", room, message, exclude, using)


def broadcast(message: Any, exclude_user: Any = None, *, using: str = "default") -> int:
    """Send ``message`` to every connection (except ``exclude_user``'s) once the
    transaction commits. Returns the row's id.

    Raises:
        TypeError: If the message cannot be carried.
    """
    exclude = None if exclude_user is None else user_key(exclude_user)
    return _write("all", "", message, exclude, using)


async def asend_to_user(user_id: Any, message: Any, *, using: str = "default") -> int:
    """:func:`send_to_user` for async code (in the thread of the caller's ORM calls,
    so inside its ``transaction.atomic`` block when it has one)."""
    return int(await sync_to_async(send_to_user)(user_id, message, using=using))


async def abroadcast_to_room(
    room: str, message: Any, exclude_user: Any = None, *, using: str = "default"
) -> int:
    """:func:`broadcast_to_room` for async code."""
    return int(await sync_to_async(broadcast_to_room)(room, message, exclude_user, using=using))


async def abroadcast(message: Any, exclude_user: Any = None, *, using: str = "default") -> int:
    """:func:`broadcast` for async code."""
    return int(await sync_to_async(broadcast)(message, exclude_user, using=using))


def _write(kind: str, target: str, message: Any, exclude: str | None, using: str) -> int:
    from .models import OutboxMessage

    frame = lm.encode_payload(message)  # TypeError here, inside the transaction
    row = OutboxMessage(kind=kind, target=target, exclude=exclude)
    if isinstance(frame, str):
        row.text = frame
    else:
        row.data = frame
    row.save(using=using)
    connection = connections[using]
    if connection.vendor == "postgresql":
        # Delivered to listeners when the transaction commits, never if it rolls
        # back; several in one transaction are delivered as one.
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, '')", [NOTIFY_CHANNEL])
    return int(row.id)
