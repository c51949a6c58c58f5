from __future__ import annotations

from django.contrib import admin

from imaging.models import DicomNode


@admin.register(DicomNode)
class DicomNodeAdmin(admin.ModelAdmin):
    """Registering modalities and PACS (AE titles) is an administrator's job; it opens no
    clinical data."""

    list_display = [
        "ae_title",
        "organization",
        "host",
        "port",
        "may_store",
        "may_query",
        "is_active",
    ]
    list_filter = ["organization", "is_active"]
    search_fields = ["ae_title", "description"]
