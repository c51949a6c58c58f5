from __future__ import annotations

app_name = "diary"

urlpatterns: list = []
