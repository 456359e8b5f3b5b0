"""What the demo's live dashboard shows: one dict, for Django and the FastAPI twin alike."""

from __future__ import annotations

from typing import Any

from svc_infra.websocket import ConnectionManager

#: The room the dashboard's viewers join; updates go to it only.
DASHBOARD_ROOM = "dashboard"


def dashboard_stats(manager: ConnectionManager) -> dict[str, Any]:
    """Cluster-wide presence (with Redis), this process's counters, the busiest rooms.

    Counters are totals since the process started: the page turns them into rates.
    """
    stats = manager.stats
    return {
        "connections": manager.connection_count,
        "process_connections": manager.local_connection_count,
        "users": len(manager.active_users),
        "rooms": manager.room_count,
        "frames_sent": stats.frames_queued,
        "messages_published": stats.published_user
        + stats.published_room
        + stats.published_broadcast,
        "evictions": stats.slow_consumers,
        "layer_errors": stats.layer_errors,
        "busiest_rooms": list(manager.room_sizes().items())[:5],
        "process": manager.ops.id,
    }
