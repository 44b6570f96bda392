"""The environments admin: writes through the services (form errors, never 500s or half-writes),
the permission door for staff, object-permission screens and history."""

import pytest
from django.test import Client
from django.urls import reverse

from apps.environments import permissions as perms
from apps.environments import services
from apps.environments.models import (
    Environment,
    EnvironmentUserObjectPermission,
    FreezeWindow,
    Kind,
    RuntimePolicy,
)

from .conftest import fresh

pytestmark = pytest.mark.django_db

ADD = reverse("admin:environments_environment_add")
CHANGELIST = reverse("admin:environments_environment_changelist")


def change_url(environment, suffix=""):
    return reverse("admin:environments_environment_change", args=[environment.pk]) + suffix


def login(user) -> Client:
    if not user.is_staff:
        user.is_staff = True
        user.save()
    client = Client()
    client.force_login(user)
    return client


def add_payload(organization, **overrides):
    data = {
        "organization": organization.pk,
        "name": "Qa",
        "slug": "",
        "kind": Kind.STAGING,
        "position": "",
        "promotes_to": "",
        "is_protected": "",
        "color": "#6b7280",
        "description": "",
    }
    data.update(overrides)
    return data


def _field_value(bound):
    value = bound.value()
    widget = bound.field.widget
    if getattr(widget, "input_type", None) == "checkbox":
        return "on" if value else None
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return str(value)


def change_form_data(response) -> dict:
    """The POST body that would save the change page unchanged (main form and inline formsets)."""
    data = {}

    def add_form(form):
        for name in form.fields:
            value = _field_value(form[name])
            if value is not None:
                data[form.add_prefix(name)] = value

    add_form(response.context["adminform"].form)
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        add_form(formset.management_form)
        for form in formset.initial_forms:
            add_form(form)
    return data


def errors_of(response) -> str:
    assert response.status_code == 200, response.status_code
    text = []
    adminform = response.context["adminform"]
    text += [str(e) for errors in adminform.form.errors.values() for e in errors]
    for inline in response.context.get("inline_admin_formsets", []):
        for form in inline.formset.forms:
            text += [str(e) for errors in form.errors.values() for e in errors]
        text += [str(e) for e in inline.formset.non_form_errors()]
    assert text, "expected form errors"
    return " ".join(text)


# --- add: limit, naming, edition --------------------------------------------------------------


def test_add_creates_through_the_service(org, org_admin, stages):
    response = login(org_admin).post(ADD, add_payload(org, name="Qa", kind=Kind.PRODUCTION, promotes_to=""))
    assert response.status_code == 302, errors_of(response)
    created = Environment.objects.get(organization=org, name="Qa")
    assert created.slug == "qa" and created.is_protected and created.position == 20
    assert created.policy.locked  # the per-kind policy default came from the service
    assert created.history.first().history_user == org_admin


def test_add_refuses_past_the_limit(org, org_admin, stages):
    client = login(org_admin)
    for name in ("Qa", "Uat"):
        assert client.post(ADD, add_payload(org, name=name)).status_code == 302
    response = client.post(ADD, add_payload(org, name="Sixth"))
    assert "limit" in errors_of(response)
    assert not Environment.objects.filter(name="Sixth").exists()
    assert Environment.objects.filter(organization=org).count() == 5


def test_add_refuses_a_name_off_the_pattern(org, org_admin, stages):
    response = login(org_admin).post(ADD, add_payload(org, name="9 lives"))
    assert "naming rule" in errors_of(response)
    assert not Environment.objects.filter(name="9 lives").exists()


def test_add_refuses_on_the_standard_edition(standard_org, standard_owner):
    response = login(standard_owner).post(ADD, add_payload(standard_org, name="Staging"))
    assert "enterprise edition" in errors_of(response)
    assert Environment.objects.filter(organization=standard_org).count() == 1


def test_add_refuses_duplicates_and_foreign_targets(org, org_admin, stages, other_env, superuser):
    response = login(org_admin).post(ADD, add_payload(org, name="Staging"))
    errors_of(response)
    response = login(superuser).post(ADD, add_payload(org, name="Qa", promotes_to=other_env.pk))
    assert "same organization" in errors_of(response)
    assert not Environment.objects.filter(name="Qa").exists()


def test_add_only_into_administered_organizations(org, other_org, org_admin, stages):
    response = login(org_admin).post(ADD, add_payload(other_org, name="Qa"))
    errors_of(response)  # other_org is not a choice for acme's owner
    assert not Environment.objects.filter(name="Qa").exists()


# --- change: rename, edition, policy inline, freeze inline ---------------------------------------


def test_change_renames_through_the_service(org_admin, stages):
    client = login(org_admin)
    url = change_url(stages["staging"])
    data = change_form_data(client.get(url))
    data["name"] = "Pre-production"
    response = client.post(url, data)
    assert response.status_code == 302, errors_of(response)
    staging = Environment.objects.get(pk=stages["staging"].pk)
    assert staging.name == "Pre-production" and staging.kind == Kind.STAGING
    assert staging.history.first().history_user == org_admin


def test_change_refuses_loops_and_pattern(org_admin, stages):
    client = login(org_admin)
    url = change_url(stages["production"])
    data = change_form_data(client.get(url))
    data["promotes_to"] = str(stages["development"].pk)
    assert "loop" in errors_of(client.post(url, data))
    data = change_form_data(client.get(url))
    data["name"] = "-prod-"
    errors_of(client.post(url, data))
    production = Environment.objects.get(pk=stages["production"].pk)
    assert production.promotes_to is None and production.name == "Production"


def test_rename_refused_on_the_standard_edition(standard_org, standard_owner):
    implicit = Environment.objects.get(organization=standard_org)
    client = login(standard_owner)
    data = change_form_data(client.get(change_url(implicit)))
    data["name"] = "Production"
    assert "enterprise edition" in errors_of(client.post(change_url(implicit), data))
    assert Environment.objects.get(pk=implicit.pk).name == "Default"


def test_kind_is_read_only_in_the_admin(org_admin, stages):
    client = login(org_admin)
    url = change_url(stages["staging"])
    data = change_form_data(client.get(url))
    data["kind"] = Kind.PRODUCTION
    assert client.post(url, data).status_code == 302
    assert Environment.objects.get(pk=stages["staging"].pk).kind == Kind.STAGING


def test_policy_inline_goes_through_the_service(org_admin, stages):
    client = login(org_admin)
    url = change_url(stages["production"])
    data = change_form_data(client.get(url))
    data["policy-0-max_rows"] = "2500"
    data.pop("policy-0-locked", None)  # unlock
    response = client.post(url, data)
    assert response.status_code == 302, errors_of(response)
    policy = RuntimePolicy.objects.get(environment=stages["production"])
    assert policy.max_rows == 2500 and not policy.locked
    latest = RuntimePolicy.history.filter(environment_id=stages["production"].pk).first()
    assert latest.history_user == org_admin


def test_policy_inline_errors_are_form_errors_and_write_nothing(org_admin, stages):
    client = login(org_admin)
    url = change_url(stages["development"])
    data = change_form_data(client.get(url))
    data["description"] = "should not be saved"
    data["policy-0-sample_percent"] = "5"  # development already samples by rows
    assert "not both" in errors_of(client.post(url, data))
    development = Environment.objects.get(pk=stages["development"].pk)
    assert development.description == ""
    assert development.policy.sample_percent is None


def test_freeze_window_inline_adds_through_the_service_and_refuses_bad_cron(org_admin, stages):
    client = login(org_admin)
    url = change_url(stages["production"])
    data = change_form_data(client.get(url))
    data.update(
        {
            "freeze_windows-TOTAL_FORMS": "1",
            "freeze_windows-0-kind": "recurring",
            "freeze_windows-0-cron": "99 * * * *",
            "freeze_windows-0-duration_minutes": "30",
            "freeze_windows-0-timezone": "Europe/Paris",
            "freeze_windows-0-reason": "month end",
        }
    )
    assert "cron" in errors_of(client.post(url, data))
    assert not FreezeWindow.objects.exists()
    data["freeze_windows-0-cron"] = "0 18 28 * *"
    response = client.post(url, data)
    assert response.status_code == 302, errors_of(response)
    window = FreezeWindow.objects.get()
    assert window.created_by == org_admin and window.environment == stages["production"]
    assert window.history.first().history_user == org_admin

    data = change_form_data(client.get(url))
    data["freeze_windows-0-DELETE"] = "on"
    data["freeze_windows-0-id"] = str(window.pk)
    data["freeze_windows-0-environment"] = str(stages["production"].pk)
    response = client.post(url, data)
    assert response.status_code == 302, errors_of(response)
    assert not FreezeWindow.objects.exists()


def test_delete_protected_is_refused_without_500(org_admin, stages):
    client = login(org_admin)
    delete_url = reverse("admin:environments_environment_delete", args=[stages["production"].pk])
    response = client.post(delete_url, {"post": "yes"})
    assert response.status_code == 302
    assert Environment.objects.filter(pk=stages["production"].pk).exists()
    response = client.post(
        reverse("admin:environments_environment_delete", args=[stages["staging"].pk]), {"post": "yes"}
    )
    assert response.status_code == 302
    assert not Environment.objects.filter(pk=stages["staging"].pk).exists()


# --- the door for staff -----------------------------------------------------------------------


def test_staff_see_only_what_they_may_view(org_admin, members, stages, other_env, superuser):
    developer_page = login(members["developer"]).get(CHANGELIST)
    assert developer_page.status_code == 200
    assert [e.slug for e in developer_page.context["cl"].result_list] == ["development"]
    admin_page = login(org_admin).get(CHANGELIST)
    assert {e.slug for e in admin_page.context["cl"].result_list} == {"development", "staging", "production"}
    superuser_page = login(superuser).get(CHANGELIST)
    assert len(superuser_page.context["cl"].result_list) == 4
    # Not visible: the admin treats it as missing.
    assert login(members["developer"]).get(change_url(stages["production"])).status_code == 302


def test_changelist_columns_and_search(org_admin, stages):
    client = login(org_admin)
    page = client.get(CHANGELIST, {"q": "prod"})
    assert [e.slug for e in page.context["cl"].result_list] == ["production"]
    content = page.content.decode()
    for column in ("column-name", "column-organization", "column-kind", "column-position", "column-promotes_to"):
        assert column in content
    assert "column-is_protected" in content and "column-locked" in content
    assert client.get(CHANGELIST, {"kind__exact": "staging"}).context["cl"].result_count == 1
    assert client.get(CHANGELIST, {"policy__locked__exact": "1"}).context["cl"].result_count == 1


def test_view_without_manage_is_read_only(members, stages):
    client = login(members["developer"])
    url = change_url(stages["development"])
    page = client.get(url)
    assert page.status_code == 200
    assert not page.context["has_change_permission"]
    data = {"name": "Hijacked", "slug": "development", "position": "0", "color": "#000000"}
    assert client.post(url, data).status_code == 403
    assert Environment.objects.get(pk=stages["development"].pk).name == "Development"


def test_history_form_view_cannot_revert(org_admin, stages):
    client = login(org_admin)
    record = stages["staging"].history.first()
    url = reverse("admin:environments_environment_simple_history", args=[stages["staging"].pk, record.history_id])
    assert client.get(url).status_code == 200
    assert client.post(url, {"name": "Reverted"}).status_code == 403


# --- object permissions and history buttons ---------------------------------------------------


def test_change_page_has_both_buttons_and_both_work(org_admin, stages):
    client = login(org_admin)
    staging = stages["staging"]
    page = client.get(change_url(staging)).content.decode()
    permissions_url = reverse("admin:environments_environment_permissions", args=[staging.pk])
    history_url = reverse("admin:environments_environment_history", args=[staging.pk])
    assert permissions_url in page and history_url in page
    assert client.get(permissions_url).status_code == 200
    services.environment_update(actor=org_admin, environment=staging, description="pre-prod")
    history = client.get(history_url)
    assert history.status_code == 200
    assert "orgadmin" in history.content.decode()


def test_permission_screens_need_manage(org_admin, members, stages):
    developer = members["developer"]
    client = login(developer)
    development = stages["development"]
    assert client.get(reverse("admin:environments_environment_permissions", args=[development.pk])).status_code == 403
    user_url = reverse("admin:environments_environment_permissions_manage_user", args=[development.pk, developer.pk])
    assert client.post(user_url, {"permissions": ["manage_environment"]}).status_code == 403
    assert not perms.may(fresh(developer), perms.MANAGE, development)
    services.permission_grant(actor=org_admin, environment=development, codename=perms.MANAGE, user=developer)
    assert client.get(reverse("admin:environments_environment_permissions", args=[development.pk])).status_code == 200


def test_permission_screen_grants_and_revokes_through_the_services(org_admin, members, stages, outsider):
    client = login(org_admin)
    staging = stages["staging"]
    developer = members["developer"]
    url = reverse("admin:environments_environment_permissions_manage_user", args=[staging.pk, developer.pk])
    page = client.get(url)
    choices = [c[0] for c in page.context["form"].fields["permissions"].choices]
    assert choices == list(perms.CODENAMES)
    assert client.post(url, {"permissions": [perms.VIEW, perms.RUN]}).status_code == 302
    assert set(perms.held_codenames(fresh(developer), staging)) == {perms.VIEW, perms.RUN}
    assert client.post(url, {"permissions": [perms.VIEW]}).status_code == 302
    assert set(perms.held_codenames(fresh(developer), staging)) == {perms.VIEW}
    history = list(
        EnvironmentUserObjectPermission.history.filter(user=developer, content_object=staging).values_list(
            "history_type", "history_user__username"
        )
    )
    assert sorted(history) == [("+", "orgadmin"), ("+", "orgadmin"), ("-", "orgadmin")]

    outsider_url = reverse("admin:environments_environment_permissions_manage_user", args=[staging.pk, outsider.pk])
    response = client.post(outsider_url, {"permissions": [perms.VIEW]})
    assert response.status_code == 200
    assert "not a member" in str(response.context["form"].errors)
    assert not EnvironmentUserObjectPermission.objects.filter(user=outsider).exists()


def test_grant_table_admins_are_read_mostly(org_admin, members, stages):
    client = login(org_admin)
    url = reverse("admin:environments_environmentuserobjectpermission_changelist")
    assert client.get(url).status_code == 200
    assert client.get(reverse("admin:environments_environmentuserobjectpermission_add")).status_code == 403
    row = EnvironmentUserObjectPermission.objects.filter(user=members["staging_approver"]).first()
    assert (
        client.get(reverse("admin:environments_environmentuserobjectpermission_history", args=[row.pk])).status_code
        == 200
    )
    assert client.get(reverse("admin:environments_environmentgroupobjectpermission_changelist")).status_code == 200
    # A member who manages nothing sees no grants.
    assert login(members["developer"]).get(url).status_code == 403
