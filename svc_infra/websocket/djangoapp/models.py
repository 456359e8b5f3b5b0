"""The transactional outbox's table (``migrate`` creates it): see :mod:`.outbox`."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.db import models
from django.utils import timezone

__all__ = ["OutboxMessage"]


class OutboxMessage(models.Model):
    """A message written in the caller's transaction, published by the relay after
    the commit (``python manage.py ws_outbox``).

    ``kind`` is ``"user"``, ``"room"`` or ``"all"``; ``target`` the user or room
    (empty for ``"all"``); the frame is ``text`` (JSON or text) or ``data``
    (binary), encoded at the call as the manager encodes it. ``message_id`` travels
    with the message, so that a row published twice (a relay that died before
    marking it) reaches each socket once.
    """

    # Annotated by hand: mypy runs without the django-stubs plugin here.
    id: models.BigAutoField[Any, int] = models.BigAutoField(primary_key=True)
    message_id: models.UUIDField[Any, uuid.UUID] = models.UUIDField(
        default=uuid.uuid4, unique=True, editable=False
    )
    kind: models.CharField[Any, str] = models.CharField(max_length=8)
    target: models.TextField[Any, str] = models.TextField(blank=True, default="")
    exclude: models.TextField[Any, str | None] = models.TextField(null=True, blank=True)
    text: models.TextField[Any, str | None] = models.TextField(null=True, blank=True)
    data: models.BinaryField[Any, bytes | memoryview | None] = models.BinaryField(
        null=True, blank=True
    )
    created: models.DateTimeField[Any, datetime] = models.DateTimeField(default=timezone.now)
    #: When the relay published it (None: pending).
    sent: models.DateTimeField[Any, datetime | None] = models.DateTimeField(null=True, blank=True)
    #: Failed publications so far (the row stays pending and is retried).
    attempts: models.PositiveIntegerField[Any, int] = models.PositiveIntegerField(default=0)
    last_error: models.TextField[Any, str] = models.TextField(blank=True, default="")

    class Meta:
        db_table = "svc_infra_ws_outbox"
        indexes = [  # noqa: RUF012 (Django's Meta)
            # The relay's scan: pending rows in id order, however many are sent.
            models.Index(
                fields=["id"], condition=models.Q(sent__isnull=True), name="ws_outbox_pending"
            ),
            models.Index(fields=["sent"], name="ws_outbox_sent"),
        ]

    def __str__(self) -> str:
        return f"outbox {self.id} ({self.kind} {self.target!r})"
