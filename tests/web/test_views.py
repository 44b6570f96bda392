"""The screens: sign-in, who sees what (404 for what they may not see), forms whose bad input is a
form error and never a 500, CSRF, stale plans, and query-count guards on the busy pages."""

import pytest
from django.urls import reverse

from apps.approvals import services as approvals
from apps.approvals.models import ApprovalDecision, PromotionRequest, PromotionState
from apps.pipelines import services as pipeline_services
from apps.runs import services as run_services
from apps.variables import services as variable_services
from apps.variables.models import Variable
from tests.runs.conftest import GRAPH
from tests.web.conftest import validated_in_staging

pytestmark = pytest.mark.django_db

# Measured: inbox 15, request detail 24 (SQLite and PostgreSQL alike, whatever the number of rows).
INBOX_MAX_QUERIES = 18
DETAIL_MAX_QUERIES = 28
AUDIT_MAX_QUERIES = 42  # measured 37 (one UNION query, then a few per model on the page)


def new_version(w):
    """A new version (a description added to the source node), run successfully in development."""
    number = w["pipeline"].versions.count() + 1
    nodes = [{**GRAPH["nodes"][0], "description": f"v{number}"}, GRAPH["nodes"][1]]
    version = pipeline_services.pipeline_version_create(
        actor=w["org_admin"], pipeline=w["pipeline"], graph={**GRAPH, "nodes": nodes}
    )
    run = run_services.run_create(
        actor=w["org_admin"], pipeline=w["pipeline"], environment=w["development"], version=version
    )
    run_services.run_execute(run.pk)
    return version


def detail_url(promotion):
    return reverse("web:request-detail", args=[promotion.pk])


def decide_url(promotion):
    return reverse("web:request-decide", args=[promotion.pk])


# --- sign-in -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["web:inbox", "web:projects", "web:audit"])
def test_every_screen_requires_sign_in(client, name):
    response = client.get(reverse(name))
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


def test_sign_in_with_the_login_form(client, web):
    page = client.get("/accounts/login/")
    assert page.status_code == 200 and b'<label for="id_username">' in page.content
    response = client.post("/accounts/login/", {"username": "dev", "password": "pw"})
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/").status_code == 200


def test_wrong_password_is_a_form_error(client, web):
    response = client.post("/accounts/login/", {"username": "dev", "password": "nope"})
    assert response.status_code == 200
    assert b"Please enter a correct username and password" in response.content


def test_sign_out_is_a_post(client_for, web):
    client = client_for(web["developer"])
    response = client.post("/accounts/logout/")
    assert response.status_code == 302
    assert client.get("/").status_code == 302


# --- inbox ---------------------------------------------------------------------------------------------


def test_inbox_lists_awaiting_mine_and_decided(client_for, web, staging_request, production_request):
    developer = client_for(web["developer"]).get("/")
    assert developer.status_code == 200
    assert [p.pk for p in developer.context["mine"]] == [production_request.pk, staging_request.pk]
    assert developer.context["awaiting"] == []
    approver = client_for(web["prod_approver"]).get("/")
    assert [p.pk for p in approver.context["awaiting"]] == [production_request.pk]
    assert approver.context["nav"]["awaiting"] == 1
    assert b'data-testid="nav-awaiting">1<' in approver.content
    approvals.promotion_reject(actor=web["staging_approver"], request=staging_request, comment="not now")
    decided = client_for(web["developer"]).get("/").context["decided"]
    assert [p.pk for p in decided] == [staging_request.pk]


def test_inbox_filters(client_for, web, staging_request, production_request):
    client = client_for(web["developer"])
    by_target = client.get("/", {"target": web["production"].pk}).context["mine"]
    assert [p.pk for p in by_target] == [production_request.pk]
    by_state = client.get("/", {"state": "rejected"}).context["mine"]
    assert by_state == []
    by_pipeline = client.get("/", {"pipeline": web["pipeline"].pk, "project": web["project"].pk}).context["mine"]
    assert len(by_pipeline) == 2


def test_inbox_bad_filter_is_a_form_error(client_for, web, staging_request):
    response = client_for(web["developer"]).get("/", {"project": "not-a-number", "state": "bogus"})
    assert response.status_code == 400
    assert "project" in response.context["form"].errors and "state" in response.context["form"].errors


def test_inbox_filter_cannot_name_an_invisible_environment(client_for, web, outsider):
    response = client_for(outsider).get("/", {"target": web["production"].pk})
    assert response.status_code == 400


def test_inbox_query_count_is_bounded(client_for, web, django_assert_max_num_queries):
    for _ in range(3):
        run = validated_in_staging(web)
        approvals.promotion_request_create(
            actor=web["developer"],
            pipeline=web["pipeline"],
            version=new_version(web),
            source=web["development"],
            attached_runs=[run],
        )
    client = client_for(web["prod_approver"])
    client.get("/")
    with django_assert_max_num_queries(INBOX_MAX_QUERIES):
        response = client.get("/")
    assert response.status_code == 200


# --- request detail ------------------------------------------------------------------------------------


def test_detail_shows_the_request_and_its_plan(client_for, web, production_request):
    response = client_for(web["prod_approver"]).get(detail_url(production_request))
    assert response.status_code == 200
    html = response.content.decode()
    assert "0 of 2 approvals" in html
    assert "validation passed" in html
    assert "orders_src" in html  # graph diff: every node is added on a first deployment
    assert 'value="approve"' in html and 'value="reject"' in html
    assert f'value="{production_request.plan_hash}"' in html
    assert "Validated in staging" in html
    assert "Run #" in html


def test_requester_sees_no_approve_button(client_for, web, production_request):
    response = client_for(web["developer"]).get(detail_url(production_request))
    html = response.content.decode()
    assert response.status_code == 200
    assert 'value="approve"' not in html
    assert "You cannot approve your own request" in html
    assert "Cancel this request" in html


def test_requester_who_may_approve_is_told_why_not(client_for, web):
    """The organization admin may decide requests into staging, but not their own (reject obeys the
    rules' eligibility like approve; withdrawing is the cancel button)."""
    request, _ = approvals.promotion_request_create(
        actor=web["org_admin"], pipeline=web["pipeline"], version=web["version"], source=web["development"]
    )
    html = client_for(web["org_admin"]).get(detail_url(request)).content.decode()
    assert "You cannot approve your own request" in html
    assert 'value="approve"' not in html and 'value="reject"' not in html
    assert "Cancel this request" in html


def test_outsider_and_people_without_view_get_404(client_for, web, outsider, production_request, staging_request):
    assert client_for(outsider).get(detail_url(production_request)).status_code == 404
    # the staging approver may not view production
    assert client_for(web["staging_approver"]).get(detail_url(production_request)).status_code == 404
    assert client_for(web["staging_approver"]).get(detail_url(staging_request)).status_code == 200
    response = client_for(outsider).post(
        decide_url(production_request), {"decision": "approve", "plan_hash": production_request.plan_hash}
    )
    assert response.status_code == 404


def test_detail_query_count_is_bounded(client_for, web, production_request, django_assert_max_num_queries):
    approvals.promotion_approve(actor=web["prod_approver"], request=production_request, comment="fine")
    client = client_for(web["prod_approver2"])
    client.get(detail_url(production_request))
    with django_assert_max_num_queries(DETAIL_MAX_QUERIES):
        response = client.get(detail_url(production_request))
    assert b"1 of 2 approvals" in response.content


def test_two_approvals_approve_and_the_worker_deploys(client_for, web, production_request):
    first = client_for(web["prod_approver"]).post(
        decide_url(production_request),
        {"decision": "approve", "comment": "ok", "plan_hash": production_request.plan_hash},
    )
    assert first.status_code == 302 and first["Location"] == detail_url(production_request)
    page = client_for(web["prod_approver"]).get(detail_url(production_request))
    assert b"1 of 2 approvals" in page.content
    # the page says what the API and the service say: this approver has decided on this plan
    assert b"You already decided on this plan (approved)." in page.content and b'value="approve"' not in page.content
    second = client_for(web["prod_approver2"]).post(
        decide_url(production_request), {"decision": "approve", "plan_hash": production_request.plan_hash}
    )
    assert second.status_code == 302
    production_request.refresh_from_db()
    assert production_request.state == PromotionState.APPROVED
    approvals.promotion_execute(production_request.pk)
    page = client_for(web["developer"]).get(detail_url(production_request))
    assert b'data-testid="state">Deployed<' in page.content


def test_approving_twice_is_a_form_error(client_for, web, production_request):
    client = client_for(web["prod_approver"])
    data = {"decision": "approve", "plan_hash": production_request.plan_hash}
    assert client.post(decide_url(production_request), data).status_code == 302
    response = client.post(decide_url(production_request), data)
    assert response.status_code == 409
    assert "You already decided" in response.content.decode()


def test_requester_posting_approve_gets_a_form_error_not_a_500(client_for, web, production_request):
    response = client_for(web["developer"]).post(
        decide_url(production_request), {"decision": "approve", "plan_hash": production_request.plan_hash}
    )
    assert response.status_code == 403
    assert "You cannot approve this request: you cannot approve your own request" in response.content.decode()
    assert not ApprovalDecision.objects.exists()


def test_reject_needs_a_comment(client_for, web, production_request):
    client = client_for(web["prod_approver"])
    response = client.post(
        decide_url(production_request), {"decision": "reject", "plan_hash": production_request.plan_hash}
    )
    assert response.status_code == 400
    assert response.context["form"].errors["comment"] == ["Say why the request is rejected."]
    production_request.refresh_from_db()
    assert production_request.state == PromotionState.PENDING
    response = client.post(
        decide_url(production_request),
        {"decision": "reject", "comment": "metrics look off", "plan_hash": production_request.plan_hash},
    )
    assert response.status_code == 302
    production_request.refresh_from_db()
    assert production_request.state == PromotionState.REJECTED
    assert b"metrics look off" in client.get(detail_url(production_request)).content


@pytest.mark.parametrize(
    "data",
    [
        {"decision": "approve"},
        {"decision": "maybe", "plan_hash": "x"},
        {"decision": "approve", "plan_hash": "x" * 500},
        {"decision": "reject", "plan_hash": "x", "comment": "y" * 5000},
    ],
)
def test_bad_decision_input_is_a_form_error(client_for, web, production_request, data):
    response = client_for(web["prod_approver"]).post(decide_url(production_request), data)
    assert response.status_code == 400
    assert response.context["form"].errors
    assert not ApprovalDecision.objects.exists()


def test_a_changed_plan_is_refused(client_for, web, production_request):
    response = client_for(web["prod_approver"]).post(
        decide_url(production_request), {"decision": "approve", "plan_hash": "sha256:" + "0" * 64}
    )
    assert response.status_code == 409
    assert "The plan changed" in response.content.decode()
    assert not ApprovalDecision.objects.exists()


def test_stale_plan_is_shown_and_approving_refreezes_it(client_for, web, production_request):
    target_table = Variable.objects.get(name="target_table")
    variable_services.variable_override_set(
        actor=web["org_admin"], variable=target_table, environment=web["production"], value="orders_mart_v2"
    )
    client = client_for(web["prod_approver"])
    page = client.get(detail_url(production_request))
    assert b'data-testid="stale"' in page.content
    shown = production_request.plan_hash
    response = client.post(decide_url(production_request), {"decision": "approve", "plan_hash": shown})
    assert response.status_code == 409
    assert not ApprovalDecision.objects.exists()
    production_request.refresh_from_db()
    assert production_request.plan_hash != shown  # frozen again: the approver now reviews the new plan
    page = client.get(detail_url(production_request))
    assert b'data-testid="stale"' not in page.content
    assert b"orders_mart_v2" in page.content


def test_detail_shows_secrets_as_references_only(client_for, web):
    from apps.connections import services as connection_services
    from apps.connections.models import ConnectionRole
    from apps.secrets import services as secret_services

    secret = secret_services.secret_create(
        actor=web["org_admin"],
        organization=web["org"],
        name="reporting_password",
        value="hunter2-do-not-show",
        allowed_environments=[web["staging"]],
    )
    connection_services.connection_binding_set(
        actor=web["org_admin"],
        role=ConnectionRole.objects.get(name="reporting"),
        environment=web["staging"],
        params={"path": str(web["paths"]["staging"]["target"])},
        credential=secret,
    )
    request, _ = approvals.promotion_request_create(
        actor=web["developer"], pipeline=web["pipeline"], version=web["version"], source=web["development"]
    )
    html = client_for(web["staging_approver"]).get(detail_url(request)).content.decode()
    assert "secret://reporting_password" in html
    assert "hunter2" not in html


def test_decisions_need_csrf(client_for, web, production_request):
    client = client_for(web["prod_approver"], enforce_csrf_checks=True)
    response = client.post(
        decide_url(production_request), {"decision": "approve", "plan_hash": production_request.plan_hash}
    )
    assert response.status_code == 403
    assert not ApprovalDecision.objects.exists()
    page = client.get(detail_url(production_request))
    token = page.cookies["csrftoken"].value
    response = client.post(
        decide_url(production_request),
        {"decision": "approve", "plan_hash": production_request.plan_hash, "csrfmiddlewaretoken": token},
    )
    assert response.status_code == 302
    assert ApprovalDecision.objects.count() == 1


def test_requester_cancels(client_for, web, staging_request):
    response = client_for(web["developer"]).post(reverse("web:request-cancel", args=[staging_request.pk]))
    assert response.status_code == 302
    staging_request.refresh_from_db()
    assert staging_request.state == PromotionState.CANCELLED


def test_approver_cannot_cancel_someone_elses_request(client_for, web, staging_request):
    client = client_for(web["staging_approver"])
    response = client.post(reverse("web:request-cancel", args=[staging_request.pk]), follow=True)
    assert response.status_code == 200
    assert b"Only the requester" in response.content
    staging_request.refresh_from_db()
    assert staging_request.state == PromotionState.PENDING


def test_get_on_a_post_only_screen_is_405(client_for, web, staging_request):
    assert client_for(web["developer"]).get(decide_url(staging_request)).status_code == 405


# --- environment matrix -------------------------------------------------------------------------------------


def test_matrix_shows_values_sources_differences_and_missing(client_for, web):
    org_admin = web["org_admin"]
    required = variable_services.variable_create(
        actor=org_admin,
        organization=web["org"],
        project=web["project"],
        name="api_base_url",
        type="string",
        required_in=["production"],
    )
    variable_services.variable_override_set(
        actor=org_admin, variable=required, environment=web["staging"], value="https://staging.example"
    )
    response = client_for(org_admin).get(reverse("web:project-matrix", args=[web["project"].pk]))
    assert response.status_code == 200
    rows = {row["name"]: row for row in response.context["variables"]}
    assert rows["api_base_url"]["differs"] and rows["api_base_url"]["missing"]
    missing = {c["environment"]: c["missing_required"] for c in rows["api_base_url"]["cells"]}
    assert missing == {"development": False, "staging": False, "production": True}
    assert not rows["source_table"]["differs"]
    html = response.content.decode()
    assert "https://staging.example" in html and "missing" in html
    assert [c["name"] for c in response.context["connections"]] == ["reporting", "warehouse"]


def test_matrix_shows_credentials_as_references(client_for, web):
    from apps.connections import services as connection_services
    from apps.connections.models import ConnectionRole
    from apps.secrets import services as secret_services

    secret = secret_services.secret_create(
        actor=web["org_admin"],
        organization=web["org"],
        name="reporting_password",
        value="hunter2-do-not-show",
        allowed_environments=[web["production"]],
    )
    role = ConnectionRole.objects.get(name="reporting")
    connection_services.connection_binding_set(
        actor=web["org_admin"],
        role=role,
        environment=web["production"],
        params={"path": str(web["paths"]["production"]["target"])},
        credential=secret,
    )
    response = client_for(web["org_admin"]).get(reverse("web:project-matrix", args=[web["project"].pk]))
    html = response.content.decode()
    assert "secret://reporting_password" in html
    assert "hunter2" not in html


def test_matrix_columns_are_the_environments_the_user_may_view(client_for, web, outsider):
    response = client_for(web["staging_approver"]).get(reverse("web:project-matrix", args=[web["project"].pk]))
    assert {e["slug"] for e in response.context["environments"]} == {"development", "staging"}
    assert client_for(outsider).get(reverse("web:project-matrix", args=[web["project"].pk])).status_code == 404


# --- pipeline page -------------------------------------------------------------------------------------------


def pipeline_url(w):
    return reverse("web:pipeline-detail", args=[w["pipeline"].pk])


def promote_url(w):
    return reverse("web:pipeline-promote", args=[w["pipeline"].pk])


def test_pipeline_page_shows_deployments_runs_and_the_request_form(client_for, web):
    run = validated_in_staging(web)
    response = client_for(web["developer"]).get(pipeline_url(web))
    assert response.status_code == 200
    stages = {s["environment"].slug: s["deployment"] for s in response.context["stages"]}
    assert stages["development"].version == web["version"] and stages["production"] is None
    assert [item["run"].pk for item in response.context["runs"]] == [run.pk]
    html = response.content.decode()
    assert "Request promotion" in html and '<label for="id_version">' in html


def test_request_promotion_through_the_form(client_for, web):
    client = client_for(web["developer"])
    form = client.get(pipeline_url(web)).context["form"]
    data = {
        "version": web["version"].pk,
        "source": web["development"].pk,
        "reason": "ready",
        "ticket": "OPS-9",
        "idempotency_key": form.initial["idempotency_key"],
    }
    response = client.post(promote_url(web), data)
    promotion = PromotionRequest.objects.get()
    assert response.status_code == 302 and response["Location"] == detail_url(promotion)
    assert promotion.target == web["staging"] and promotion.requested_by == web["developer"]
    again = client.post(promote_url(web), data)  # a double submit finds the first request
    assert again.status_code == 302 and PromotionRequest.objects.count() == 1


def test_request_refused_by_the_service_is_a_form_error(client_for, web):
    response = client_for(web["developer"]).post(
        promote_url(web), {"version": web["version"].pk, "source": web["staging"].pk}
    )
    assert response.status_code == 400
    assert "version" in response.context["form"].errors
    assert "neither deployed nor validated" in response.content.decode()
    assert not PromotionRequest.objects.exists()


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"version": "abc", "source": "1"},
        {"version": "999999", "source": "999999"},
        {"version": "{version}", "source": "{development}", "ticket": "x" * 101},
        {"version": "{version}", "source": "{development}", "attached_runs": ["999999"]},
    ],
)
def test_bad_request_input_is_a_form_error(client_for, web, data):
    data = {
        key: (
            value.format(version=web["version"].pk, development=web["development"].pk)
            if isinstance(value, str)
            else value
        )
        for key, value in data.items()
    }
    response = client_for(web["developer"]).post(promote_url(web), data)
    assert response.status_code == 400
    assert response.context["form"].errors
    assert not PromotionRequest.objects.exists()


def test_someone_without_request_rights_gets_no_form_and_a_refusal(client_for, web):
    approver = client_for(web["staging_approver"])
    page = approver.get(pipeline_url(web))
    assert page.status_code == 200 and b"Request promotion</h2>" not in page.content
    response = approver.post(promote_url(web), {"version": web["version"].pk, "source": web["development"].pk})
    assert response.status_code == 403  # the service refuses; the refusal is shown on the form
    assert "request_promotion" in response.content.decode()
    assert not PromotionRequest.objects.exists()


def test_pipeline_and_matrix_query_counts_are_bounded(client_for, web, django_assert_max_num_queries):
    for _ in range(3):
        validated_in_staging(web)
    client = client_for(web["developer"])
    # The pipeline page measured 30 with its run, schedule and preview dialogs (each select one query);
    # +3 with "My development values" (the member's rows, the environment select) and the stages
    # offering the sample toggle; +4 with its triggers (their list, and the trigger dialog's
    # environment, pipeline and secret selects). All constant: tests/core/test_list_paths.py holds the
    # page at 1 and 50 rows.
    for url, limit in ((pipeline_url(web), 39), (reverse("web:project-matrix", args=[web["project"].pk]), 20)):
        client.get(url)
        with django_assert_max_num_queries(limit):
            assert client.get(url).status_code == 200


def test_pipeline_page_is_404_for_outsiders(client_for, web, outsider):
    assert client_for(outsider).get(pipeline_url(web)).status_code == 404
    assert client_for(outsider).post(promote_url(web), {}).status_code == 404


# --- audit ------------------------------------------------------------------------------------------------------


def test_audit_feed_shows_who_what_where_and_the_change(client_for, web, staging_request):
    target_table = Variable.objects.get(name="target_table")
    variable_services.variable_override_set(
        actor=web["org_admin"], variable=target_table, environment=web["staging"], value="orders_stg"
    )
    variable_services.variable_override_set(
        actor=web["org_admin"], variable=target_table, environment=web["staging"], value="orders_stg2"
    )
    response = client_for(web["developer"]).get(reverse("web:audit"), {"model": "variables.VariableOverride"})
    assert response.status_code == 200
    newest = response.context["entries"][0]
    assert newest["who"] == "orgadmin" and newest["action"] == "changed"
    assert newest["environment"] == web["staging"] and "target_table" in newest["name"]
    assert {"field": "value", "before": "orders_stg", "after": "orders_stg2"} in newest["changes"]


def test_audit_feed_only_shows_what_the_user_may_see(client_for, web, outsider, staging_request):
    target_table = Variable.objects.get(name="target_table")
    variable_services.variable_override_set(
        actor=web["org_admin"], variable=target_table, environment=web["production"], value="orders_prod"
    )
    staging_approver = client_for(web["staging_approver"]).get(
        reverse("web:audit"), {"model": "variables.VariableOverride"}
    )
    assert staging_approver.context["entries"] == []
    everything = client_for(web["staging_approver"]).get(reverse("web:audit")).context["page"].paginator.count
    assert everything > 0
    memberships = client_for(web["staging_approver"]).get(reverse("web:audit"), {"model": "tenancy.Membership"})
    assert memberships.context["entries"] == []  # organization admins only
    assert client_for(web["org_admin"]).get(reverse("web:audit"), {"model": "tenancy.Membership"}).context["entries"]
    assert client_for(outsider).get(reverse("web:audit")).context["page"].paginator.count == 0


def test_audit_filters_and_pagination(client_for, web, staging_request):
    client = client_for(web["org_admin"])
    everything = client.get(reverse("web:audit"))
    assert everything.context["page"].paginator.count > 50
    second = client.get(reverse("web:audit"), {"page": 2})
    assert second.status_code == 200 and second.context["page"].number == 2
    staging_only = client.get(reverse("web:audit"), {"environment": web["staging"].pk})
    assert staging_only.context["entries"]
    assert all(e["environment"] == web["staging"] for e in staging_only.context["entries"])
    by_user = client.get(reverse("web:audit"), {"user": "dev"})
    assert all(e["who"] == "dev" for e in by_user.context["entries"]) and by_user.context["entries"]


def test_audit_bad_filter_is_a_form_error(client_for, web):
    response = client_for(web["org_admin"]).get(
        reverse("web:audit"), {"since": "yesterday", "model": "auth.User", "until": "2020-01-01"}
    )
    assert response.status_code == 400
    assert {"since", "model"} <= set(response.context["form"].errors)


def test_audit_query_count_is_bounded(client_for, web, staging_request, django_assert_max_num_queries):
    client = client_for(web["org_admin"])
    client.get(reverse("web:audit"))
    with django_assert_max_num_queries(AUDIT_MAX_QUERIES):
        response = client.get(reverse("web:audit"))
    assert len(response.context["entries"]) == 50
