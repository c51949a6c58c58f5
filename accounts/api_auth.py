from __future__ import annotations

from rest_framework.authentication import TokenAuthentication


class BearerTokenAuthentication(TokenAuthentication):
    """The API token as `Authorization: Bearer <token>` (the form every API here accepts)."""

    keyword = "Bearer"
