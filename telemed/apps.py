from __future__ import annotations

from django.apps import AppConfig


class TelemedConfig(AppConfig):
    name = "telemed"
    verbose_name = "Telemed"
