from __future__ import annotations

from django.urls import path

from consults.consumers import SessionConsumer

# WebSocket routes of the consults app (video session signaling).
websocket_urlpatterns: list = [
    path("ws/sessions/<int:appointment_id>/", SessionConsumer.as_asgi()),
]
