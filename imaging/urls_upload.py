from __future__ import annotations

from django.urls import path

from imaging import upload_views

# The resumable upload protocol is described in imaging/upload_views.py.
urlpatterns = [
    path("upload/", upload_views.upload_page, name="upload"),
    path("uploads/", upload_views.batch_create, name="upload-batches"),
    path("uploads/<int:batch_id>/", upload_views.batch_status, name="upload-status"),
    path("uploads/<int:batch_id>/files/", upload_views.file_declare, name="upload-files"),
    path("uploads/files/<uuid:upload_id>", upload_views.file_chunk, name="upload-file"),
]
