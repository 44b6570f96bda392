"""Organizations API: visibility, staff-only commercial settings, rules from other apps, bad input."""

import pytest

from apps.tenancy import services
from apps.tenancy.models import Organization, Role

from .conftest import assert_error

LIST = "/api/v1/organizations/"


def detail(org):
    return f"/api/v1/organizations/{org.pk}/"


def test_list_shows_only_my_organizations(api, org, other_org, members, org_admin, outsider):
    response = api(members["developer"]).get(LIST)
    assert response.status_code == 200
    assert [row["slug"] for row in response.json()["results"]] == ["acme"]
    assert response.json()["results"][0]["my_role"] == Role.MEMBER

    assert api(org_admin).get(LIST).json()["results"][0]["my_role"] == Role.OWNER
    assert api(outsider).get(LIST).json()["results"] == []


def test_outsider_gets_404_on_detail(api, org, other_org, org_admin, outsider):
    assert_error(api(outsider).get(detail(org)), 404, code="not_found")
    # A member of one organization does not see another one either.
    assert_error(api(org_admin).get(detail(other_org)), 404)
    assert api(org_admin).get(detail(org)).json()["slug"] == "acme"


def test_anonymous_gets_401_with_error_shape(api, org):
    assert_error(api().get(LIST), 401)


def test_create_is_staff_only(api, org, members, platform_staff):
    before = Organization.objects.count()
    error = assert_error(api(members["developer"]).post(LIST, {"name": "Initech"}), 403, code="permission_denied")
    assert "staff" in error["message"]
    assert Organization.objects.count() == before

    response = api(platform_staff).post(LIST, {"name": "Initech", "max_environments": 3})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["slug"] == "initech"
    assert body["max_environments"] == 3
    assert body["my_role"] == Role.OWNER
    created = Organization.objects.get(slug="initech")
    assert created.memberships.get().user == platform_staff


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"name": "Initech", "colour": "red"}, "colour"),
        ({"name": "Init\x00ech"}, "name"),
        ({"name": "x" * 121}, "name"),
        ({"name": ["Initech"]}, "name"),
        ({"name": "Initech", "max_environments": "lots"}, "max_environments"),
        ({"name": "Initech", "max_environments": 0}, "max_environments"),
        ({"name": "Initech", "edition": "platinum"}, "edition"),
        ({"name": "Initech", "slug": "not a slug!"}, "slug"),
        ({"name": "Initech", "environment_name_pattern": "^[a-z(+$"}, "environment_name_pattern"),
        ({"name": "Initech", "environment_name_pattern": "^ok\x00$"}, "environment_name_pattern"),
        ({"name": "Acme"}, "name"),
    ],
)
def test_create_bad_input_is_400_naming_the_field_and_writes_nothing(api, org, platform_staff, payload, field):
    before = (Organization.objects.count(), Organization.history.count())
    assert_error(api(platform_staff).post(LIST, payload), 400, code="validation_error", field=field)
    assert (Organization.objects.count(), Organization.history.count()) == before


def test_body_that_is_not_an_object_is_400(api, org, platform_staff):
    before = Organization.objects.count()
    assert_error(api(platform_staff).post(LIST, ["Initech"]), 400)
    response = api(platform_staff).post(LIST, "{not json", content_type="application/json")
    assert_error(response, 400)
    assert Organization.objects.count() == before


def test_rename_by_an_admin_who_is_not_staff(api, org, plain_admin):
    response = api(plain_admin).patch(detail(org), {"name": "Acme Corp"})
    assert response.status_code == 200, response.content
    org.refresh_from_db()
    assert org.name == "Acme Corp"


@pytest.mark.parametrize(("field", "value"), [("edition", "standard"), ("max_environments", 50)])
def test_edition_and_limit_changes_are_staff_only(api, org, plain_admin, org_admin, stages, field, value):
    before = Organization.history.filter(id=org.pk).count()
    error = assert_error(api(plain_admin).patch(detail(org), {field: value}), 403, code="permission_denied")
    assert "staff" in error["message"]
    org.refresh_from_db()
    assert getattr(org, field) != value
    assert Organization.history.filter(id=org.pk).count() == before


def test_platform_operator_raises_the_limit(api, org, platform_staff):
    response = api(platform_staff).patch(detail(org), {"max_environments": 50})
    assert response.status_code == 200, response.content
    assert Organization.objects.get(pk=org.pk).max_environments == 50


def test_staff_org_admin_without_the_platform_permission_cannot_raise_the_limit(api, org, org_admin):
    assert org_admin.is_staff
    assert_error(api(org_admin).patch(detail(org), {"max_environments": 50}), 403)
    assert Organization.objects.get(pk=org.pk).max_environments == 5


def test_limit_below_existing_environments_is_refused(api, org, platform_staff, stages):
    assert_error(api(platform_staff).patch(detail(org), {"max_environments": 2}), 400, field="max_environments")
    assert Organization.objects.get(pk=org.pk).max_environments == 5


def test_downgrade_with_several_environments_is_refused(api, org, platform_staff, stages):
    assert_error(api(platform_staff).patch(detail(org), {"edition": "standard"}), 400, field="edition")
    assert Organization.objects.get(pk=org.pk).edition == "enterprise"


def test_pattern_that_existing_names_break_is_refused(api, org, plain_admin, stages):
    before = Organization.objects.get(pk=org.pk).environment_name_pattern
    error = assert_error(
        api(plain_admin).patch(detail(org), {"environment_name_pattern": r"^[a-z]+$"}),
        400,
        field="environment_name_pattern",
    )
    assert "Production" in error["message"]
    assert Organization.objects.get(pk=org.pk).environment_name_pattern == before

    response = api(plain_admin).patch(detail(org), {"environment_name_pattern": r"^[A-Z][a-z]+$"})
    assert response.status_code == 200, response.content
    assert Organization.objects.get(pk=org.pk).environment_name_pattern == r"^[A-Z][a-z]+$"


def test_invalid_regex_pattern_is_400(api, org, plain_admin):
    assert_error(
        api(plain_admin).patch(detail(org), {"environment_name_pattern": "(unclosed"}),
        400,
        field="environment_name_pattern",
    )


@pytest.mark.parametrize("payload", [{"name": "Acme"}, {"name": "Renamed"}, {}])
def test_plain_member_cannot_change_the_organization_even_without_effect(api, org, members, payload):
    """Whether the change would have an effect must not decide whether a non-admin is answered 200."""
    assert_error(api(members["developer"]).patch(detail(org), payload), 403)
    assert Organization.objects.get(pk=org.pk).name == "Acme"


def test_update_bad_input_names_the_field(api, org, org_admin):
    assert_error(api(org_admin).patch(detail(org), {"slug": "new"}), 400, field="slug")
    assert_error(api(org_admin).patch(detail(org), {"max_environments": "x"}), 400, field="max_environments")
    assert_error(api(org_admin).patch(detail(org), {"name": "A\x00"}), 400, field="name")
    assert Organization.objects.get(pk=org.pk).slug == "acme"


def test_nul_in_query_string_is_400(api, org, org_admin):
    assert_error(api(org_admin).get(LIST + "?slug=ac%00me"), 400, field="slug")


def test_list_query_count_is_bounded(api, org, org_admin, platform_staff, django_assert_max_num_queries):
    for index in range(8):
        services.organization_create(actor=platform_staff, name=f"Org {index}", owner=org_admin)
    client = api(org_admin)
    with django_assert_max_num_queries(8):  # session, user, roles, platform-permission check, count, page
        response = client.get(LIST)
    assert response.status_code == 200
    assert len(response.json()["results"]) == 9
    assert {row["my_role"] for row in response.json()["results"]} == {Role.OWNER}
