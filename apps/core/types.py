"""Type names the apps share in annotations (one place for each)."""

from typing import TypeAlias

from django.contrib.auth.models import User as _AuthUser

User: TypeAlias = _AuthUser
"""Who acts: the `actor` of every service. A person or a service account's user (AUTH_USER_MODEL
is Django's own), carrying the API key it came with when apps.tenancy.permissions attached one."""
