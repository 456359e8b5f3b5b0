"""HTTP views of the demo project."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def index(request: HttpRequest) -> HttpResponse:
    """The echo demo page."""
    return render(request, "project/index.html")
