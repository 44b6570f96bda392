"""Idempotency-Key for creating POSTs (promotion requests, runs): one mechanism for every model that
stores `idempotency_key` and `idempotency_fingerprint` beside a unique (owner, key) constraint.

A retried request with the same key gets the row made first; the same key with another body is a
409. Under concurrency the losers of the race fail in one of several ways (the unique constraint's
IntegrityError, a model constraint seen by full_clean, a domain check such as "an open request
already exists"); each of those happens only after the winner committed, so re-reading the key
then finds the winner, and that row is the answer. Hand-written: no maintained Django library
replays a domain object (rather than a cached HTTP response) by key."""

import hashlib
import json
import re

from django.db import IntegrityError, transaction
from drf_spectacular.utils import OpenApiParameter

from .errors import Conflict, DomainError, field_error

KEY_PATTERN = re.compile(r"^[!-~]{1,200}\Z")  # printable ASCII without spaces, as the schema says

IDEMPOTENCY_KEY_PARAMETER = OpenApiParameter(
    "Idempotency-Key",
    {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[!-~]+$"},
    OpenApiParameter.HEADER,
    description=(
        "Makes a retried POST safe: the same key (per user) returns the object made first (200 instead of 201); "
        "the same key with a different body is a 409."
    ),
)


def key_from_headers(request) -> str:
    """The request's Idempotency-Key header ('' when absent); a malformed key is a 400 naming it."""
    raw = request.headers.get("Idempotency-Key")
    if raw is None:
        return ""
    if not KEY_PATTERN.match(raw):
        raise field_error("Idempotency-Key", "Give 1 to 200 printable ASCII characters without spaces.")
    return raw


def fingerprint(**fields) -> str:
    """A stable digest of a request body (what 'the same request' means for a key)."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


def create_once(*, queryset, key: str, body_fingerprint: str, create, what: str):
    """Run `create()` (which stores `key` and `body_fingerprint` on the row) unless `queryset` (the
    owner's rows) already holds `key`. Returns (row, created)."""
    if not key:
        return create(), True
    existing = queryset.filter(idempotency_key=key).first()
    if existing is None:
        try:
            with transaction.atomic():
                return create(), True
        except (IntegrityError, DomainError):
            # Outside the rolled-back savepoint: a fresh statement sees the winner's commit.
            existing = queryset.filter(idempotency_key=key).first()
            if existing is None:
                raise
    if existing.idempotency_fingerprint and existing.idempotency_fingerprint != body_fingerprint:
        raise Conflict(f"This Idempotency-Key was already used for a different {what}.", code="idempotency_key_reused")
    return existing, False
