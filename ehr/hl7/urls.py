from __future__ import annotations

app_name = "hl7"

urlpatterns: list = []
