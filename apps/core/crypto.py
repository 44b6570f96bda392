"""Symmetric encryption for values stored at rest (MultiFernet keys from FIELD_ENCRYPTION_KEYS).

The first key encrypts, every key decrypts, so keys rotate by prepending a new one. A value that no
key can decrypt raises `UndecryptableValue`: ciphertext is never handed back as if it were plain.
"""

import hashlib
import hmac

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class UndecryptableValue(Exception):
    """No configured key decrypts the stored value."""


def _fernet() -> MultiFernet:
    keys = settings.FIELD_ENCRYPTION_KEYS
    if not keys:
        raise RuntimeError("FIELD_ENCRYPTION_KEYS is empty")
    return MultiFernet([Fernet(k.encode() if isinstance(k, str) else k) for k in keys])


def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt(ciphertext: str) -> str:
    try:
        return _fernet().decrypt(ciphertext.encode()).decode()
    except (InvalidToken, ValueError) as exc:
        raise UndecryptableValue("stored value cannot be decrypted with the configured keys") from exc


def rotate(ciphertext: str) -> str:
    """Re-encrypt under the newest key."""
    try:
        return _fernet().rotate(ciphertext.encode()).decode()
    except (InvalidToken, ValueError) as exc:
        raise UndecryptableValue("stored value cannot be decrypted with the configured keys") from exc


def fingerprint(plaintext: str) -> str:
    """A short keyed digest that shows a value changed without revealing it."""
    digest = hmac.new(settings.SECRET_KEY.encode(), plaintext.encode(), hashlib.sha256).hexdigest()
    return f"sha256:{digest[:16]}"
