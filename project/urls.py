"""HTTP URL routes of the demo project."""

from django.urls import path

from . import views

urlpatterns = [
    path("", views.index, name="index"),
]
