from __future__ import annotations

from imaging import urls_export, urls_pages, urls_upload

app_name = "imaging"

# Each part keeps its own URL list: the study pages and viewer, uploads, export and review.
urlpatterns = [*urls_pages.urlpatterns, *urls_upload.urlpatterns, *urls_export.urlpatterns]
