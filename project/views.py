"""HTTP views of the demo project."""

from __future__ import annotations

import json

from asgiref.sync import sync_to_async
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from svc_infra.websocket import ChannelLayerError
from svc_infra.websocket.auth.core import JWTSettings, WSAuthError, verify_token
from svc_infra.websocket.djangoapp import get_process_manager, outbox


def index(request: HttpRequest) -> HttpResponse:
    """The chat page."""
    return render(request, "project/index.html")


def dashboard(request: HttpRequest) -> HttpResponse:
    """The live admin dashboard (its socket wants a token with scope ws:admin)."""
    return render(request, "project/dashboard.html")


@require_GET
async def health(request: HttpRequest) -> JsonResponse:
    manager = get_process_manager()
    return JsonResponse(
        {
            "status": "healthy",
            "connections": manager.connection_count,
            "users": len(manager.active_users),
        }
    )


@require_GET
async def stats(request: HttpRequest) -> JsonResponse:
    manager = get_process_manager()
    return JsonResponse(
        {
            "connections": manager.connection_count,
            "users": manager.active_users,
            "rooms": manager.room_count,
        }
    )


@require_GET
async def room_users(request: HttpRequest, room: str) -> JsonResponse:
    return JsonResponse({"room": room, "users": get_process_manager().get_room_users(room)})


# A bearer token authenticates this API, not a session cookie: no CSRF to defend.
@csrf_exempt
@require_POST
async def notify(request: HttpRequest, user_id: str) -> JsonResponse:
    """Send the JSON body to a user's sockets as {"type": "notification", "data": body}."""
    denied = await _notify_denied(request)
    if denied is not None:
        return denied
    try:
        payload = json.loads(request.body or b"null")
    except ValueError:
        return JsonResponse({"detail": "the body must be JSON"}, status=400)
    try:
        await get_process_manager().send_to_user(user_id, {"type": "notification", "data": payload})
    except ChannelLayerError:  # this process's sockets got it; others could not be told
        return JsonResponse({"detail": "other processes unreachable"}, status=503)
    return JsonResponse({"sent": True})


async def _notify_denied(request: HttpRequest) -> JsonResponse | None:
    """The refusal for a request without a bearer token of scope notify:send."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return JsonResponse({"detail": "missing credentials"}, status=401)
    try:
        principal = verify_token(token.strip(), JWTSettings.load())
    except WSAuthError as exc:
        return JsonResponse({"detail": exc.reason}, status=401)
    if not principal.has_scopes("notify:send"):
        return JsonResponse({"detail": "insufficient scope"}, status=403)
    return None


@csrf_exempt
@require_POST
async def outbox_notify(request: HttpRequest, user_id: str) -> JsonResponse:
    """As ``notify``, through the transactional outbox: the notification is written in
    a database transaction and sent once it commits (``?rollback=1`` rolls it back:
    nothing is sent)."""
    denied = await _notify_denied(request)
    if denied is not None:
        return denied
    try:
        payload = json.loads(request.body or b"null")
    except ValueError:
        return JsonResponse({"detail": "the body must be JSON"}, status=400)
    rollback = request.GET.get("rollback") == "1"
    committed = await sync_to_async(_write_notification)(user_id, payload, rollback)
    return JsonResponse({"committed": committed})


class _RolledBackError(Exception):
    pass


def _write_notification(user_id: str, payload: object, rollback: bool) -> bool:
    try:
        with transaction.atomic():
            outbox.send_to_user(user_id, {"type": "notification", "data": payload})
            if rollback:
                raise _RolledBackError
    except _RolledBackError:
        return False
    return True
