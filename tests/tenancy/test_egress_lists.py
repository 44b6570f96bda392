"""An organization's egress allow/deny lists: edited by its owners and admins through the API and
the admin, validated (a bad network or a loopback allow entry is a 400 / form error naming the
field, nothing changes), recorded in history."""

import json

import pytest
from django.urls import reverse

from apps.tenancy.models import Organization

pytestmark = pytest.mark.django_db


def org_url(org) -> str:
    return f"/api/v1/organizations/{org.pk}/"


def test_admins_edit_the_lists_through_the_api(api, org, org_admin):
    lists = {"egress_allow": ["10.20.0.0/16", "*.warehouse.example.com"], "egress_deny": ["10.20.99.0/24"]}
    response = api(org_admin).patch(org_url(org), lists, format="json")
    assert response.status_code == 200, response.content
    assert {k: response.json()[k] for k in lists} == lists
    org.refresh_from_db()
    assert (org.egress_allow, org.egress_deny) == (lists["egress_allow"], lists["egress_deny"])
    record = org.history.latest("history_date")
    assert record.history_user == org_admin and record.history_change_reason == "changed: egress_allow, egress_deny"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"egress_allow": ["10.0.0.0/33"]}, "egress_allow"),
        ({"egress_allow": ["127.0.0.1"]}, "egress_allow"),
        ({"egress_allow": ["169.254.169.254/32"]}, "egress_allow"),
        ({"egress_allow": ["0.0.0.0/0"]}, "egress_allow"),
        ({"egress_allow": "10.0.0.0/8"}, "egress_allow"),
        ({"egress_deny": ["not a host!"]}, "egress_deny"),
        ({"egress_deny": [{"cidr": "10.0.0.0/8"}]}, "egress_deny"),
    ],
)
def test_bad_entries_are_400s_naming_the_field(api, org, org_admin, payload, field):
    before = org.history.count()
    response = api(org_admin).patch(org_url(org), payload, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["fields"]
    org.refresh_from_db()
    assert (org.egress_allow, org.egress_deny, org.history.count()) == ([], [], before)


def test_members_cannot_change_the_lists(api, org, members):
    response = api(members["developer"]).patch(org_url(org), {"egress_allow": ["10.0.0.0/8"]}, format="json")
    assert response.status_code == 403
    assert Organization.objects.get(pk=org.pk).egress_allow == []


def test_the_admin_form_validates_the_lists(client, org, org_admin):
    client.force_login(org_admin)
    data = {
        "name": org.name,
        "edition": org.edition,
        "max_environments": org.max_environments,
        "environment_name_pattern": org.environment_name_pattern,
        "egress_allow": json.dumps(["127.0.0.0/8"]),
        "egress_deny": "",
        "memberships-TOTAL_FORMS": "0",
        "memberships-INITIAL_FORMS": "0",
    }
    change = reverse("admin:tenancy_organization_change", args=[org.pk])
    response = client.post(change, data)
    assert response.status_code == 200
    assert "egress_allow" in response.context["adminform"].form.errors
    assert Organization.objects.get(pk=org.pk).egress_allow == []
    data["egress_allow"] = json.dumps(["10.0.0.0/8"])
    assert client.post(change, data).status_code == 302
    assert Organization.objects.get(pk=org.pk).egress_allow == ["10.0.0.0/8"]
