"""HMAC-SHA256 signatures for webhook bodies.

Headers sent with every webhook:
  X-Planasonix-Event:      event name
  X-Planasonix-Delivery:   delivery id (UUID; the same on every retry, so receivers can de-duplicate)
  X-Planasonix-Timestamp:  Unix seconds when this attempt was signed
  X-Planasonix-Signature:  "sha256=" + hex(HMAC-SHA256(secret, f"{timestamp}.{body}"))
Signing the timestamp with the body lets receivers refuse replays older than their tolerance.

The Standard Webhooks header set (https://www.standardwebhooks.com) is sent too, so receivers can
verify with the public `standardwebhooks` libraries:
  webhook-id:         the delivery id (as X-Planasonix-Delivery)
  webhook-timestamp:  Unix seconds (as X-Planasonix-Timestamp)
  webhook-signature:  "v1," + base64(HMAC-SHA256(secret, f"{id}.{timestamp}.{body}"))
In those libraries' terms the channel's secret is `standard_webhooks_secret(signing secret)`:
"whsec_" + base64 of the signing secret's UTF-8 bytes.
"""

import base64
import hashlib
import hmac

# Signing and verifying (constant time, replay window) live once, in apps.core.signing.
from apps.core.signing import sign, verify

__all__ = ["sign", "standard_signature", "standard_webhooks_secret", "verify"]


def standard_webhooks_secret(secret: str) -> str:
    """The signing secret as the Standard Webhooks libraries take it (`Webhook(...)`)."""
    return "whsec_" + base64.b64encode(secret.encode()).decode()


def standard_signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value (Standard Webhooks, scheme v1)."""
    mac = hmac.new(secret.encode(), f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()
