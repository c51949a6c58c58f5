"""ASGI entry point: HTTP through Django, WebSockets through Channels' routers."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "telemed.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs Django set up first)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from consults.routing import websocket_urlpatterns as consults_websockets  # noqa: E402
from ehr.routing import websocket_urlpatterns as ehr_websockets  # noqa: E402
from imaging.dicomweb.asgi import DicomwebReads  # noqa: E402

# WebSocket routes of every app (ehr: live alerts; consults: signaling, when it lands).
websocket_urlpatterns: list = [*ehr_websockets, *consults_websockets]

application = ProtocolTypeRouter(
    {
        # DICOMweb reads (hundreds of frames per viewer) in one thread hop each.
        "http": DicomwebReads(django_asgi_app),
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)
