"""ICE servers for a call's peer connections, with short-lived TURN credentials.

settings.WEBRTC_ICE_SERVERS lists the STUN and TURN servers as browsers take them. A TURN entry
with a fixed username and credential gives every logged-in user of the call page a password
to the relay that never changes. With WEBRTC_TURN_SECRET set (the `static-auth-secret` of
coturn's `use-auth-secret`, the "TURN REST API"), TURN entries without a username get
credentials of their own instead, for each call page and each room of the broker: the username
is `<expiry as Unix time>:<who>` and the credential the base64 HMAC-SHA1 of that username
under the secret, which the TURN server checks without asking us. They stop working after
WEBRTC_TURN_CREDENTIAL_SECONDS; a page opened again gets new ones.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

from django.conf import settings


def _is_turn(urls: str | list[str]) -> bool:
    return any(
        url.startswith(("turn:", "turns:")) for url in ([urls] if isinstance(urls, str) else urls)
    )


def turn_credentials(secret: str, who: str, expires: int) -> tuple[str, str]:
    """The username and credential of the TURN REST API for `who`, valid until `expires`."""
    username = f"{expires}:{who}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


def ice_servers_for(who: str) -> list[dict[str, Any]]:
    """settings.WEBRTC_ICE_SERVERS for one participant (or the broker), as RTCPeerConnection
    takes them, with credentials made for `who` where the module's description says."""
    secret = settings.WEBRTC_TURN_SECRET
    expires = int(time.time()) + settings.WEBRTC_TURN_CREDENTIAL_SECONDS
    servers = []
    for entry in settings.WEBRTC_ICE_SERVERS:
        server = dict(entry)
        if secret and "username" not in server and _is_turn(server.get("urls", [])):
            server["username"], server["credential"] = turn_credentials(secret, who, expires)
        servers.append(server)
    return servers
