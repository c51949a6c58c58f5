"""Live alerts over the channel layer: one group per organization, whose clinicians listen.

The service calls these after its transaction commits, so a listener that reacts by loading
the alert always finds it. Nothing here is kept in the process: with Redis every web process
and worker reaches the same groups.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.urls import reverse

from ehr.models import Alert


def alerts_group(organization_id: int) -> str:
    return f"diary-alerts.org-{organization_id}"


def alert_payload(alert: Alert) -> dict[str, Any]:
    """What a clinician's page needs to show the alert; labels are translated by the page."""
    return {
        "id": alert.pk,
        "patient_id": alert.patient_id,
        "patient_name": alert.patient.full_name,
        "measure": alert.measure,
        "message": alert.message,
        "created_at": alert.created_at.isoformat(),
        "diary_url": reverse("diary:patient-diary", args=[alert.patient_id]),
        "ack_url": reverse("diary:alert-ack", args=[alert.pk]),
    }


def _send(organization_id: int, message: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is not None:
        async_to_sync(layer.group_send)(alerts_group(organization_id), message)


def broadcast_alert_raised(alert_id: int) -> None:
    alert = Alert.objects.select_related("patient").get(pk=alert_id)
    _send(alert.patient.organization_id, {"type": "alert.raised", "alert": alert_payload(alert)})


def broadcast_alert_acknowledged(alert_id: int) -> None:
    alert = Alert.objects.select_related("patient").get(pk=alert_id)
    _send(
        alert.patient.organization_id,
        {"type": "alert.acknowledged", "alert_id": alert.pk, "patient_id": alert.patient_id},
    )
