from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ConsultsConfig(AppConfig):
    name = "consults"
    verbose_name = _("Consultations")

    def ready(self) -> None:
        from consults import (  # noqa: F401
            policies,  # noqa: F401  (registers the access policies)
            recording_tasks,  # Celery's autodiscovery imports only tasks.py
        )
