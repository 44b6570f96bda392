"""Tenancy fixtures: a non-staff organization admin and key helpers (the second organization is
tests/conftest.py's `other_org`)."""

import pytest
from django.contrib.auth import get_user_model

from apps.tenancy import services
from apps.tenancy.models import Role

User = get_user_model()


def assert_error(response, status: int, *, code: str | None = None, field: str | None = None) -> dict:
    """The response has the API's one error shape (and the given status, code and field)."""
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code, error
    if field is not None:
        assert field in error.get("fields", {}), error
    return error


@pytest.fixture
def plain_admin(org, org_admin, members):
    """An organization admin (role admin, not owner) who is not platform staff."""
    user = User.objects.create_user("plainadmin", "plainadmin@example.com", "pw")
    services.membership_add(actor=org_admin, organization=org, user=user, role=Role.ADMIN)
    return user


@pytest.fixture
def make_key(org):
    """make_key(owner, scopes, organization=org, actor=owner) -> (ApiKey, token)."""

    def make(owner, scopes, organization=None, actor=None, **kwargs):
        return services.api_key_create(
            actor=actor or owner,
            organization=organization or org,
            name=f"{owner.username}-{'-'.join(scopes)}",
            scopes=scopes,
            owner=owner,
            **kwargs,
        )

    return make
