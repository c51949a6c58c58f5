"""Short-lived TURN credentials (consults/services/ice.py): what coturn's use-auth-secret
accepts, made for each call page and each room of the broker."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import pytest

from accounts.models import User
from consults.management.commands.mediaserver import ice_servers_from_settings
from consults.models import Appointment
from tests.conftest import logged_in_client
from tests.consults.sessions import joined_by_link

pytestmark = pytest.mark.django_db

STUN = {"urls": "stun:turn.example.kg:3478"}
TURN = {"urls": ["turn:turn.example.kg:3478?transport=udp", "turns:turn.example.kg:5349"]}
FIXED = {"urls": "turn:old.example.kg:3478", "username": "naryn", "credential": "s3cret"}


def _page_ice(client: Any, session: Appointment) -> list[dict[str, Any]]:
    html = client.get(f"/consults/sessions/{session.pk}/").content.decode()
    start = html.index('<script id="session-config" type="application/json">')
    body = html[html.index(">", start) + 1 : html.index("</script>", start)]
    return json.loads(body)["iceServers"]


def _coturn_accepts(entry: dict[str, Any], secret: str) -> bool:
    """What coturn checks with use-auth-secret: the credential is the base64 HMAC-SHA1 of the
    username under the shared secret, and the username's timestamp is still ahead."""
    expected = hmac.new(secret.encode(), entry["username"].encode(), hashlib.sha1).digest()
    expiry = int(entry["username"].split(":", 1)[0])
    return base64.b64decode(entry["credential"]) == expected and expiry > time.time()


def test_each_call_page_gets_credentials_of_its_own_that_expire(
    session: Appointment, specialist: User, settings: Any
) -> None:
    settings.WEBRTC_ICE_SERVERS = [STUN, TURN, FIXED]
    settings.WEBRTC_TURN_SECRET = "coturn-static-auth-secret"
    settings.WEBRTC_TURN_CREDENTIAL_SECONDS = 3600

    doctor = _page_ice(logged_in_client(specialist), session)
    patient = _page_ice(joined_by_link(session), session)

    for servers in (doctor, patient):
        stun, turn, fixed = servers
        assert stun == STUN  # untouched
        assert fixed == FIXED
        assert turn["urls"] == TURN["urls"]
        assert _coturn_accepts(turn, "coturn-static-auth-secret")
        assert not _coturn_accepts(turn, "another-secret")
        expiry = int(turn["username"].split(":", 1)[0])
        assert time.time() + 3500 < expiry <= time.time() + 3600
    assert doctor[1]["username"].endswith(f":user:{specialist.pk}")
    assert doctor[1]["username"] != patient[1]["username"]


def test_without_a_secret_the_list_is_given_as_configured(
    session: Appointment, specialist: User, settings: Any
) -> None:
    settings.WEBRTC_ICE_SERVERS = [STUN, TURN, FIXED]
    settings.WEBRTC_TURN_SECRET = ""

    assert _page_ice(logged_in_client(specialist), session) == [STUN, TURN, FIXED]


def test_the_broker_makes_credentials_for_each_new_room(settings: Any) -> None:
    settings.WEBRTC_ICE_SERVERS = [TURN]
    settings.WEBRTC_TURN_SECRET = "coturn-static-auth-secret"

    [server] = ice_servers_from_settings()

    assert server.urls == TURN["urls"]
    assert server.username.endswith(":broker")
    entry = {"username": server.username, "credential": server.credential}
    assert _coturn_accepts(entry, "coturn-static-auth-secret")
