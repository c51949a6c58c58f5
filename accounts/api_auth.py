from __future__ import annotations

from django.utils.translation import gettext as _
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token

from accounts.models import User
from telemed.compiled import CompiledQuery

# Every API request looks its token up: compiled to SQL once (telemed.compiled).
_token_by_key = CompiledQuery(
    Token, lambda key: Token.objects.select_related("user").filter(key=key), arity=1
)


class BearerTokenAuthentication(TokenAuthentication):
    """The API token as `Authorization: Bearer <token>` (the form every API here accepts)."""

    keyword = "Bearer"

    def authenticate_credentials(self, key: str) -> tuple[User, Token]:
        # DRF's own, less compiling the query each time.
        found = _token_by_key(key)
        if not found:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        token = found[0]
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        return token.user, token
