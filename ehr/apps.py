from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class EhrConfig(AppConfig):
    name = "ehr"
    verbose_name = _("Health records")

    def ready(self) -> None:
        from ehr import policies  # noqa: F401  (registers the access policies)
