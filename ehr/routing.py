from __future__ import annotations

from django.urls import path

from ehr.consumers import AlertConsumer

# WebSocket routes of the ehr app (live diary alerts).
websocket_urlpatterns: list = [
    path("ws/alerts/", AlertConsumer.as_asgi()),
]
