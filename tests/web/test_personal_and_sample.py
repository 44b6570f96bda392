"""The pipeline page's "My development values" section (personal overrides: set and clear your own,
refusals on the form with their 4xx, nothing written) and the run dialog's sample toggle, offered only
where the runs service's sample_answer allows it (which the service enforces with a 400 on `sample`)."""

import pytest
from django.urls import reverse

from apps.runs import services as run_services
from apps.runs.models import Run
from apps.variables import services as variable_services
from apps.variables.models import PersonalOverride, Variable

from .test_run_screens import pipeline_url, run_form

pytestmark = pytest.mark.django_db


def personal_post(client, w, **data):
    return client.post(pipeline_url(w, "web:pipeline-personal"), data)


def test_a_member_sets_and_clears_their_own_value_and_their_run_uses_it(client_for, web, no_dispatch):
    client = client_for(web["developer"])
    page = client.get(pipeline_url(web))
    form = page.context["personal_form"]
    assert list(form.fields["environment"].queryset) == [web["development"]]  # development stages only
    assert b'data-testid="personal-overrides"' in page.content
    target = Variable.objects.get(name="target_table")
    response = personal_post(
        client, web, environment=web["development"].pk, variable=target.pk, value="mine_mart", secret=""
    )
    assert response.status_code == 302, response.context and response.context["personal_form"].errors
    row = PersonalOverride.objects.get()
    assert (row.user, row.value) == (web["developer"], "mine_mart")
    page = client.get(pipeline_url(web))
    assert b"mine_mart" in page.content
    run_form(client, web, environment=web["development"].pk)
    assert Run.objects.get().resolved["variables"]["target_table"]["source"] == "personal"
    # Another member's page shows none of it.
    other = client_for(web["staging_approver"]).get(pipeline_url(web))
    assert b"mine_mart" not in other.content and other.context["personal"] == []
    clear = reverse("web:pipeline-personal-clear", args=[web["pipeline"].pk, row.pk])
    assert client_for(web["staging_approver"]).post(clear).status_code == 404
    assert client.post(clear).status_code == 302 and not PersonalOverride.objects.exists()


@pytest.mark.parametrize(
    ("value", "field", "message"),
    [("", "value", "Give a value."), ("{{ nope", "value", None)],
)
def test_a_refused_value_is_a_400_on_its_field_and_writes_nothing(client_for, web, value, field, message):
    target = Variable.objects.get(name="target_table")
    variable_services.variable_update(actor=web["org_admin"], variable=target, regex=r"[a-z_]+")
    response = personal_post(
        client_for(web["developer"]), web, environment=web["development"].pk, variable=target.pk, value=value
    )
    assert response.status_code == 400
    errors = response.context["personal_form"].errors[field]
    assert errors and (message is None or errors == [message])
    assert not PersonalOverride.objects.exists()


def test_outside_development_is_refused_on_the_form(client_for, web):
    target = Variable.objects.get(name="target_table")
    response = personal_post(
        client_for(web["org_admin"]), web, environment=web["staging"].pk, variable=target.pk, value="x"
    )
    assert response.status_code == 400 and "environment" in response.context["personal_form"].errors
    assert not PersonalOverride.objects.exists()


# --- the run dialog's sample toggle -----------------------------------------------------------------------------


def test_the_sample_toggle_is_offered_only_where_the_service_allows_it(client_for, web):
    form = client_for(web["org_admin"]).get(pipeline_url(web)).context["run_form"]
    offered = {e.pk for e in form.fields["environment"].queryset if e.pk in form.sample_environments}
    assert (
        offered
        == {e.pk for e in form.fields["environment"].queryset if run_services.sample_answer(e).allowed}
        == {web["development"].pk, web["staging"].pk}
    )
    html = client_for(web["org_admin"]).get(pipeline_url(web)).content.decode()
    assert f'data-sample-environments="{form.sample_environments_attr}"' in html


def test_a_sample_the_policy_refuses_is_a_400_on_the_toggle(client_for, web, no_dispatch):
    run_services.deploy(
        actor=web["org_admin"], pipeline=web["pipeline"], environment=web["production"], version=web["version"]
    )
    response = run_form(client_for(web["org_admin"]), web, environment=web["production"].pk, sample="on")
    assert response.status_code == 400 and not Run.objects.exists()
    assert "refuses run-time overrides" in response.context["run_form"].errors["sample"][0]


def test_a_member_who_may_sample_nowhere_sees_no_toggle(client_for, web, org_admin):
    from apps.environments import services as env_services

    env_services.runtime_policy_update(actor=org_admin, environment=web["development"], allow_runtime_overrides=False)
    response = client_for(web["developer"]).get(pipeline_url(web))
    assert not response.context["run_form"].shows_sample
    assert b"data-sample-environments" not in response.content
