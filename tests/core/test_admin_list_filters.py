"""Admin list filters come from the visibility door too: an organization admin's "By organization"
(and every other filter on a tenant-scoped relation) names only what they may see, never another
tenant's organizations, although the rows themselves were filtered already."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.urls import reverse

from tests.variables.adminforms import login

pytestmark = pytest.mark.django_db

# Changelists with a "By organization" filter on the model or through its environment, channel or binding.
CHANGELISTS = [
    "admin:environments_environment_changelist",
    "admin:environments_environmentuserobjectpermission_changelist",
    "admin:connections_connectionrole_changelist",
    "admin:connections_connectionbinding_changelist",
    "admin:connections_connectiontest_changelist",
    "admin:notifications_channel_changelist",
    "admin:notifications_notification_changelist",
    "admin:notifications_delivery_changelist",
    "admin:variables_variable_changelist",
    "admin:variables_variableoverride_changelist",
]


@pytest.fixture
def notifications_staff(org_admin):
    """The notifications admin pages need Django's model view permissions (the rows are still
    limited to the organizations the user administers)."""
    codenames = ["view_channel", "view_notification", "view_delivery"]
    org_admin.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="notifications", codename__in=codenames)
    )
    return get_user_model().objects.get(pk=org_admin.pk)


@pytest.mark.parametrize("name", CHANGELISTS)
def test_an_organization_admin_filters_by_their_own_organizations_only(
    name, org, stages, notifications_staff, other_org
):
    response = login(notifications_staff).get(reverse(name))
    assert response.status_code == 200
    assert other_org.name not in response.content.decode()


@pytest.mark.parametrize("name", CHANGELISTS)
def test_a_superuser_filters_by_every_organization(name, org, stages, superuser, other_org):
    """The same page names both organizations for a superuser: the filter is there, and it is the
    door (not the rows) that decides what it offers."""
    content = login(superuser).get(reverse(name)).content.decode()
    assert other_org.name in content and org.name in content
