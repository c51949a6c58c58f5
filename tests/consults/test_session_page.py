"""The call page: open to the session's participants, a 404 to everyone else."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from accounts.models import User
from consults.models import Appointment
from consults.services.links import issue_join_link
from tests.conftest import logged_in_client
from tests.consults.sessions import joined_by_link, link_patient

pytestmark = pytest.mark.django_db


def config_of(response: object) -> dict:
    html = response.content.decode()  # type: ignore[attr-defined]
    start = html.index('<script id="session-config" type="application/json">')
    body = html[html.index(">", start) + 1 : html.index("</script>", start)]
    return json.loads(body)


def test_specialist_gets_the_call_page_with_the_socket_and_ice_servers(
    session: Appointment, specialist: User, settings: object
):
    ice = [{"urls": "turn:turn.example.kg:3478", "username": "naryn", "credential": "s3cret"}]
    settings.WEBRTC_ICE_SERVERS = ice  # type: ignore[attr-defined]

    response = logged_in_client(specialist).get(f"/consults/sessions/{session.pk}/")

    assert response.status_code == 200
    config = config_of(response)
    assert config["socketPath"] == f"/ws/sessions/{session.pk}/"
    assert config["iceServers"] == ice
    assert config["participantKey"] == f"user:{specialist.pk}"
    assert config["isClinician"] is True
    assert "Switch camera" in response.content.decode()


def test_patient_who_joined_by_link_gets_the_page_as_a_patient(session: Appointment):
    browser = joined_by_link(session)

    response = browser.get(f"/consults/sessions/{session.pk}/")

    assert response.status_code == 200
    config = config_of(response)
    assert config["participantKey"] == f"participant:{link_patient(session).pk}"
    assert config["isClinician"] is False
    assert "waiting room" in config["strings"]["waiting"]


def test_stranger_and_anonymous_visitor_get_404(session: Appointment, other_clinician: User):
    url = f"/consults/sessions/{session.pk}/"

    assert logged_in_client(other_clinician).get(url).status_code == 404
    assert Client().get(url).status_code == 404


def test_patient_whose_link_was_replaced_gets_404(session: Appointment):
    browser = joined_by_link(session)
    issue_join_link(participant=link_patient(session))

    assert browser.get(f"/consults/sessions/{session.pk}/").status_code == 404


def test_page_is_named_consults_session(session: Appointment):
    from django.urls import reverse

    assert reverse("consults:session", args=[session.pk]) == f"/consults/sessions/{session.pk}/"
