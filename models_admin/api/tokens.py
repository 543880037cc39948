"""API tokens stored as digests: issuing one, and DRF's authentication that checks it.

A token is ``ocd_`` and 43 URL-safe characters (256 random bits). The database keeps only its
SHA-256 digest (ApiToken), so reading the table gives nobody a usable token; the key exists
in the one answer that issued it (``create_user --token``). Issuing again replaces the user's
token: the old one stops working at once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from django.db import transaction
from rest_framework.exceptions import AuthenticationFailed

from models_admin.models import ApiToken

from .throttling import ThrottledTokenAuthentication

PREFIX = "ocd_"


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def issue_token(user) -> str:
    """A new token for ``user``, replacing any earlier one; the returned key is shown once."""
    key = PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        ApiToken.objects.filter(user=user).delete()
        ApiToken.objects.create(user=user, digest=digest(key), prefix=key[: len(PREFIX) + 4])
    return key


def revoke_token(user) -> bool:
    """Delete ``user``'s token, if any: calls with it are refused from now on."""
    deleted, _ = ApiToken.objects.filter(user=user).delete()
    return bool(deleted)


class DigestTokenAuthentication(ThrottledTokenAuthentication):
    """``Authorization: Token <key>``, looked up by the key's digest (failures throttled)."""

    def authenticate_credentials(self, key: str):
        found = ApiToken.objects.select_related("user").filter(digest=digest(key)).first()
        # The digest lookup already matched; compare again in constant time for the record.
        if found is None or not hmac.compare_digest(found.digest, digest(key)):
            raise AuthenticationFailed("Invalid token.")
        if not found.user.is_active:
            raise AuthenticationFailed("User inactive or deleted.")
        return found.user, found
