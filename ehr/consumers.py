"""Live diary alerts for clinicians: `ws/alerts/` joins the groups of the user's clinics."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.utils import translation

from accounts.access import organization_ids
from accounts.models import AuditEvent, Membership, User
from accounts.request_context import request_context
from accounts.services.audit import record_event
from ehr.diary.broadcast import alerts_group
from ehr.diary.selectors import patient_for_live_alert
from ehr.models import DiaryMeasure

# Close codes in the private range (4000-4999): the page's script stops retrying on these.
NOT_LOGGED_IN = 4401
NOT_A_CLINICIAN = 4403


def _clinic_ids(user: User) -> list[int]:
    return organization_ids(user, Membership.Role.CLINICIAN)


def _deliverable(user: User, alert: dict[str, Any], ip_address: str | None) -> dict | None:
    """The alert as this clinician sees it (the measure named in their language), or None.

    Re-checked per alert: a clinician who left the clinic since connecting gets nothing.
    A delivered alert shows a patient's name and reading, so it is audited like a list."""
    patient = patient_for_live_alert(user, alert["patient_id"])
    if patient is None:
        return None
    with request_context(ip_address=ip_address, channel="websocket"):
        record_event(
            actor=user,
            action=AuditEvent.Action.LIST,
            patient_id=alert["patient_id"],
            target=patient,
            region=patient.organization.region,
            detail={"alert_id": alert["id"], "live": True},
        )
    with translation.override(user.language or settings.LANGUAGE_CODE):
        return {**alert, "measure_label": str(DiaryMeasure(alert["measure"]).label)}


class AlertConsumer(AsyncJsonWebsocketConsumer):
    """Pushes `{"type": "alert", "alert": {...}}` and `{"type": "acknowledged", ...}`.

    The only state is the list of groups joined, for this socket; any process may send.
    """

    async def connect(self) -> None:
        self.user = self.scope.get("user")
        self.joined: list[str] = []
        if self.user is None or not self.user.is_authenticated or not self.user.is_active:
            await self.close(code=NOT_LOGGED_IN)
            return
        clinic_ids = await database_sync_to_async(_clinic_ids)(self.user)
        if not clinic_ids:
            await self.close(code=NOT_A_CLINICIAN)
            return
        for clinic_id in clinic_ids:
            group = alerts_group(clinic_id)
            await self.channel_layer.group_add(group, self.channel_name)
            self.joined.append(group)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        # Clients only keep the link alive (proxies drop idle sockets); nothing else is read.
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong"})
        else:
            await self.send_json({"type": "error", "message": "Unknown message type"})

    async def alert_raised(self, event: dict[str, Any]) -> None:
        alert = event["alert"]
        client = self.scope.get("client") or [None]
        shown = await database_sync_to_async(_deliverable)(self.user, alert, client[0])
        if shown is not None:
            await self.send_json({"type": "alert", "alert": shown})

    async def alert_acknowledged(self, event: dict[str, Any]) -> None:
        await self.send_json(
            {
                "type": "acknowledged",
                "alert_id": event["alert_id"],
                "patient_id": event["patient_id"],
            }
        )
