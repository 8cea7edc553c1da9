"""Secrets the server has to read back (API clients' webhook signing secrets), stored encrypted.

Fernet under a key derived from SECRET_KEY: nothing new to configure, and a database dump or backup alone reveals no
secret. A value sealed under a key now in SECRET_KEY_FALLBACKS still opens, so SECRET_KEY is rotated the Django way
(the old key moves to SECRET_KEY_FALLBACKS) without losing what was sealed under it.
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.utils.crypto import salted_hmac

# Part of the key: changing it makes every sealed value unreadable.
KEY_PURPOSE = "diagnosis.sealed"


class UnsealError(Exception):
    """The value opens under neither SECRET_KEY nor a key in SECRET_KEY_FALLBACKS."""


def _fernet(secret_key: str) -> Fernet:
    # 32 bytes from an HMAC-SHA256 keyed with SECRET_KEY, as Django derives its own signing keys.
    digest = salted_hmac(KEY_PURPOSE, "fernet", secret=secret_key, algorithm="sha256").digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def seal(plaintext: str) -> str:
    """``plaintext`` encrypted under SECRET_KEY, as ASCII text (a Fernet token; 164 characters for 49)."""
    return _fernet(settings.SECRET_KEY).encrypt(plaintext.encode()).decode()


def unseal(sealed: str) -> str:
    """What ``seal`` was given; raises ``UnsealError`` (naming no part of the value) if no configured key opens it."""
    keys = [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]
    try:
        return MultiFernet([_fernet(key) for key in keys]).decrypt(sealed.encode()).decode()
    except InvalidToken:
        raise UnsealError(
            "it was encrypted under a SECRET_KEY that is neither the current one nor in SECRET_KEY_FALLBACKS"
        ) from None
