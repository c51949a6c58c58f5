from __future__ import annotations

# WebSocket routes of the ehr app (live diary alerts).
websocket_urlpatterns: list = []
