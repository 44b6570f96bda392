"""HMAC-SHA256 signatures of webhook bodies, both ways: the one place that signs a body, checks a
signature in constant time, and checks that a signed timestamp is inside the replay window.

The timestamped scheme (outbound notification webhooks, inbound trigger webhooks):
  X-Planasonix-Timestamp:  Unix seconds when the body was signed
  X-Planasonix-Signature:  "sha256=" + hex(HMAC-SHA256(secret, f"{timestamp}.{body}"))
Signing the timestamp with the body lets a receiver refuse a delivery older than its window; a
receiver also refuses the same signature twice inside the window (`accept_once`, a unique row).
The body-only scheme (GitHub's X-Hub-Signature-256) is `body_signature`."""

import hashlib
import hmac
import time
from collections.abc import Callable

from django.db import IntegrityError, transaction

from .errors import DomainError

REPLAY_WINDOW_SECONDS = 300
TIMESTAMP_HEADER = "X-Planasonix-Timestamp"
SIGNATURE_HEADER = "X-Planasonix-Signature"


class WebhookRefused(DomainError):
    """An inbound webhook that fails verification (signature, token, timestamp, replay): 401, nothing written."""

    code = "webhook_unauthorized"
    status = 401


def _hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The timestamped scheme's signature header value."""
    return "sha256=" + _hex(secret, f"{timestamp}.".encode() + body)


def body_signature(secret: str, body: bytes) -> str:
    """GitHub's scheme (X-Hub-Signature-256): the body alone."""
    return "sha256=" + _hex(secret, body)


def matches(expected: str, given) -> bool:
    """`given` equals `expected`, compared in constant time; anything not ASCII text is a mismatch
    (compare_digest raises TypeError on non-ASCII text: a forged header is just a wrong one)."""
    if not isinstance(given, str) or not given.isascii():
        return False
    return hmac.compare_digest(expected.encode(), given.strip().encode())


def fresh_timestamp(timestamp, *, tolerance_seconds: int = REPLAY_WINDOW_SECONDS, now=None) -> int | None:
    """The timestamp as Unix seconds when it is inside the replay window, else None."""
    if not isinstance(timestamp, str | int) or not str(timestamp).isascii():
        return None  # int() reads non-ASCII digits ('٣') too
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        return None
    now = time.time() if now is None else now
    return ts if abs(now - ts) <= tolerance_seconds else None


def verify(
    secret: str, timestamp, body: bytes, signature, *, tolerance_seconds: int = REPLAY_WINDOW_SECONDS, now=None
) -> bool:
    """What a receiver does: check that the timestamp is recent and the signature matches."""
    ts = fresh_timestamp(timestamp, tolerance_seconds=tolerance_seconds, now=now)
    return ts is not None and matches(sign(secret, ts, body), signature)


def accept_once(record: Callable[[], object]) -> bool:
    """Record a verified delivery through `record` (it creates the row whose unique constraint names
    the delivery); False when that row exists already: the delivery is a replay."""
    try:
        with transaction.atomic():
            record()
    except IntegrityError:
        return False
    return True
