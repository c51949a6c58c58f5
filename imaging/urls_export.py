from __future__ import annotations

from django.urls import path

from imaging import export_views, review_views

urlpatterns = [
    path("studies/<int:study_id>/export/", export_views.study_export, name="study-export"),
    path(
        "studies/<int:study_id>/export/block/",
        export_views.study_export_block,
        name="study-export-block",
    ),
    path(
        "exports/<int:export_id>/download/",
        export_views.export_download,
        name="export-download",
    ),
    path("review/", review_views.review_queue, name="review-queue"),
    path("review/<int:study_id>/attach/", review_views.attach, name="review-attach"),
]
