from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ImagingConfig(AppConfig):
    name = "imaging"
    verbose_name = _("Imaging")

    def ready(self) -> None:
        # Celery's autodiscovery imports only tasks.py: register the other task modules.
        from imaging import (  # noqa: F401
            export_tasks,
            policies,  # noqa: F401  (registers the access policies)
            upload_tasks,
        )
