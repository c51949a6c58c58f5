from __future__ import annotations

from django.urls import path

from ehr.hl7 import views

app_name = "hl7"

urlpatterns = [
    path("oru", views.OruEndpoint.as_view(), name="oru"),
    path("messages/", views.message_list, name="message-list"),
    path("messages/<int:lab_message_id>/", views.message_detail, name="message-detail"),
    path("messages/<int:lab_message_id>/attach/", views.message_attach, name="message-attach"),
]
