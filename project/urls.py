"""HTTP URL routes of the demo project."""

from django.urls import include, path

from . import views

urlpatterns = [
    path("", views.index, name="index"),
    path("dashboard/", views.dashboard, name="dashboard"),
    path("health/websocket", views.health, name="health"),
    path("ws/stats", views.stats, name="stats"),
    path("api/rooms/<str:room>/users/", views.room_users, name="room-users"),
    path("api/notify/<str:user_id>/", views.notify, name="notify"),
    path("api/outbox/<str:user_id>/", views.outbox_notify, name="outbox-notify"),
    # Prometheus metrics of the process's manager (the "metrics" extra).
    path("", include("svc_infra.websocket.djangoapp.metrics")),
]
