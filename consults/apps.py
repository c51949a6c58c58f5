from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ConsultsConfig(AppConfig):
    name = "consults"
    verbose_name = _("Consultations")

    def ready(self) -> None:
        # The access policies register themselves; Celery's autodiscovery imports only tasks.py.
        from consults import policies, recording_tasks  # noqa: F401
