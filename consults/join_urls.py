from __future__ import annotations

app_name = "join"

urlpatterns: list = []
