"""The approvals API: approval rules (CRUD), promotion requests (create with Idempotency-Key, list
filters, detail, approve/reject/cancel/retry/override-freeze) and deployment rollback.

Per endpoint: the happy path, bad input (400 naming the field, nothing written), permissions
(403/404), wrong-state transitions (409 naming the state), and query-count guards on the list and
detail."""

import pytest
from django.contrib.auth import get_user_model
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, connection
from django.test.utils import CaptureQueriesContext

from apps.approvals import services
from apps.approvals.models import ApprovalDecision, ApprovalRule, PromotionRequest, PromotionState
from apps.connections import services as connection_services
from apps.connections.models import ConnectionRole
from apps.environments import permissions as perms
from apps.environments import services as env_services
from apps.pipelines import services as pipeline_services
from apps.runs import services as run_services
from apps.runs.models import Deployment, RunStatus
from apps.secrets import services as secret_services
from apps.tenancy import services as tenancy_services
from apps.tenancy.models import Role
from tests.runs.conftest import GRAPH

pytestmark = pytest.mark.django_db

User = get_user_model()

RULES = "/api/v1/approval-rules/"
PROMOTIONS = "/api/v1/promotions/"
CANARY = "CANARY-91c2-staging-reporting-pw"


def promotion_url(pk, action=None):
    return f"{PROMOTIONS}{pk}/" + (f"{action}/" if action else "")


def rollback_url(pk):
    return f"/api/v1/deployments/{pk}/rollback/"


def error(response) -> dict:
    return response.json()["error"]


def assert_error(response, status, *, field=None, contains=None):
    assert response.status_code == status, response.content[:600]
    body = error(response)
    if field is not None:
        assert field in body.get("fields", {}), body
    if contains is not None:
        assert contains in body["message"], body
    return body


def request_staging(p, **extra):
    """A pending development → staging request of v1 by the developer (through the service)."""
    request, _ = services.promotion_request_create(
        actor=p["developer"], pipeline=p["pipeline"], version=p["version"], source=p["development"], **extra
    )
    return request


def rows():
    return (
        PromotionRequest.objects.count(),
        ApprovalDecision.objects.count(),
        ApprovalRule.objects.count(),
        Deployment.objects.count(),
    )


def member_with(org, org_admin, username, environment, *codenames):
    user = User.objects.create_user(username, f"{username}@example.com", "pw")
    tenancy_services.membership_add(actor=org_admin, organization=org, user=user, role=Role.MEMBER)
    for codename in codenames:
        env_services.permission_grant(actor=org_admin, environment=environment, codename=codename, user=user)
    perms.forget(user)
    return user


# --- approval rules ------------------------------------------------------------------------------------


def test_rule_create_read_update_delete(api, promo):
    p = promo
    client = api(p["org_admin"])
    body = {
        "organization": "acme",
        "environment": "production",
        "project": p["project"].slug,
        "name": "sales production",
        "required_approvals": 3,
        "require_validation": True,
        "validation_max_age_hours": 12,
        "approver_users": ["prodder", "prodder2"],
        "allowed_refs": ["main", "v*"],
        "require_ticket": r"^OPS-\d+$",
        "wait_minutes": 5,
    }
    response = client.post(RULES, body, format="json")
    assert response.status_code == 201, response.content
    rule = response.json()
    assert rule["project"] == p["project"].pk and rule["project_slug"] == "sales"
    assert rule["environment"] == "production" and rule["organization"] == "acme"
    assert rule["approver_users"] == ["prodder", "prodder2"] and rule["extra_sources"] == []
    assert rule["allowed_refs"] == ["main", "v*"] and rule["allow_self_approval"] is False
    assert response["ETag"]

    listed = client.get(RULES, {"environment": "production"}).json()
    assert {r["name"] for r in listed["results"]} == {"production review", "sales production"}
    assert [r["name"] for r in client.get(RULES, {"organization_wide": "false"}).json()["results"]] == [
        "sales production"
    ]

    detail = client.get(f"{RULES}{rule['id']}/")
    assert detail.status_code == 200 and detail.json() == rule
    patched = client.patch(
        f"{RULES}{rule['id']}/",
        {"name": "sales prod", "approver_users": ["prodder"], "project": p["project"].pk},
        format="json",
        HTTP_IF_MATCH=detail["ETag"],
    )
    assert patched.status_code == 200, patched.content
    assert patched.json()["name"] == "sales prod" and patched.json()["approver_users"] == ["prodder"]
    assert patched.json()["allowed_refs"] == ["main", "v*"]  # not given: kept
    stale = client.patch(f"{RULES}{rule['id']}/", {"name": "x"}, format="json", HTTP_IF_MATCH=detail["ETag"])
    assert stale.status_code == 412

    assert client.delete(f"{RULES}{rule['id']}/").status_code == 204
    assert not ApprovalRule.objects.filter(pk=rule["id"]).exists()


def test_rule_organization_wide_and_project_by_id(api, promo):
    p = promo
    client = api(p["org_admin"])
    response = client.post(
        RULES,
        {
            "organization": "acme",
            "environment": "production",
            "name": "hotfix path",
            "required_approvals": 2,
            "extra_sources": ["development"],
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["project"] is None and response.json()["extra_sources"] == ["development"]
    response = client.post(
        RULES,
        {"organization": "acme", "environment": "staging", "name": "sales staging", "project": p["project"].pk},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["project_slug"] == "sales"


@pytest.mark.parametrize(
    "change, field",
    [
        ({"required_approvals": 1}, "required_approvals"),  # looser than the organization's 2
        ({"require_validation": False}, "require_validation"),
        ({"environment": "nowhere"}, "environment"),
        ({"project": "no-such-project"}, "project"),
        ({"project": True}, "project"),
        ({"approver_users": ["outsider"]}, "approver_users"),  # not a member
        ({"approver_group": "no such group"}, "approver_group"),
        ({"extra_sources": ["nowhere"]}, "extra_sources"),
        ({"require_ticket": "(unclosed"}, "require_ticket"),
        ({"allowed_refs": ["main", ""]}, "allowed_refs.1"),
        ({"required_approvals": 11}, "required_approvals"),
        ({"wait_minutes": "5"}, "wait_minutes"),
        ({"organization": "nope"}, "organization"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_rule_bad_input(api, promo, outsider, change, field):
    p = promo
    body = {
        "organization": "acme",
        "environment": "production",
        "project": p["project"].slug,
        "name": "sales production",
        "required_approvals": 2,
        "require_validation": True,
        **change,
    }
    before = rows()
    response = api(p["org_admin"]).post(RULES, body, format="json")
    assert_error(response, 400, field=field)
    assert rows() == before


def test_rule_update_bad_input_changes_nothing(api, promo):
    p = promo
    client = api(p["org_admin"])
    rule = p["staging_rule"]
    response = client.patch(f"{RULES}{rule.pk}/", {"required_approvals": -1}, format="json")
    assert_error(response, 400, field="required_approvals")
    response = client.patch(f"{RULES}{rule.pk}/", {"approver_users": ["ghost"]}, format="json")
    assert_error(response, 400, field="approver_users")
    rule.refresh_from_db()
    assert rule.required_approvals == 1 and not rule.approver_users.exists()


def test_rule_duplicate_name_is_a_conflict(api, promo):
    body = {"organization": "acme", "environment": "staging", "name": "staging review"}
    response = api(promo["org_admin"]).post(RULES, body, format="json")
    assert_error(response, 409, field="name", contains="staging review")


def test_rule_permissions(api, promo, outsider, org, org_admin):
    p = promo
    before = rows()
    # a developer (member, view on staging) may read rules but not manage organization-wide ones
    developer = api(p["developer"])
    assert developer.get(f"{RULES}{p['staging_rule'].pk}/").status_code == 200
    body = {"organization": "acme", "environment": "staging", "name": "mine"}
    assert_error(developer.post(RULES, body, format="json"), 403)
    assert_error(developer.patch(f"{RULES}{p['staging_rule'].pk}/", {"name": "x"}, format="json"), 403)
    assert_error(developer.delete(f"{RULES}{p['staging_rule'].pk}/"), 403)
    # a project rule needs manage_environment on its environment
    body = {"organization": "acme", "environment": "staging", "name": "mine", "project": "sales"}
    assert_error(developer.post(RULES, body, format="json"), 403)
    # someone outside the organization sees nothing
    stranger = api(outsider)
    assert stranger.get(RULES).json()["results"] == []
    assert_error(stranger.get(f"{RULES}{p['staging_rule'].pk}/"), 404)
    assert_error(stranger.delete(f"{RULES}{p['staging_rule'].pk}/"), 404)
    assert_error(stranger.post(RULES, {**body, "project": None}, format="json"), 400, field="organization")
    # a read-scoped key reads but does not write
    _, token = tenancy_services.api_key_create(actor=org_admin, organization=org, name="ro", scopes=["read"])
    reader = api(token=token)
    assert reader.get(RULES).status_code == 200
    assert_error(reader.post(RULES, {**body, "project": None}, format="json"), 403)
    assert rows() == before


def test_rule_list_query_count_does_not_grow(api, promo, org, org_admin, django_assert_max_num_queries):
    p = promo
    client = api(p["org_admin"])

    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert client.get(RULES).status_code == 200
        return len(queries)

    few = count()
    for index in range(4):
        services.rule_save(
            actor=org_admin,
            rule=ApprovalRule(environment=p["production"], project=p["project"], name=f"extra {index}", **_TIGHT),
            approver_users=[p["prod_approver"], p["prod_approver2"]],
        )
    with django_assert_max_num_queries(few):
        response = client.get(RULES)
    assert response.json()["count"] == 6


_TIGHT = {"required_approvals": 2, "require_validation": True}


# --- creating promotion requests -------------------------------------------------------------------------


def test_create_a_request(api, promo):
    p = promo
    body = {"pipeline": p["pipeline"].pk, "version": 1, "source": "development", "reason": "ship it", "ticket": "T-1"}
    response = api(p["developer"]).post(PROMOTIONS, body, format="json")
    assert response.status_code == 201, response.content
    created = response.json()
    assert created["state"] == "pending" and created["target"] == "staging" and created["source"] == "development"
    assert created["version"] == 1 and created["requested_by"] == "dev" and created["reason"] == "ship it"
    assert created["plan_hash"].startswith("sha256:") and created["plan"]["target"] == "staging"
    assert created["plan"]["config_after"]["variables"]["source_table"]["value"] == "orders"
    assert created["rule_status"] == [
        {
            "rule": "staging review",
            "rule_id": p["staging_rule"].pk,
            "scope": "organization",
            "required_approvals": 1,
            "approvals": 0,
            "approved_by": [],
            "met": False,
            "wait_minutes": 0,
        }
    ]
    assert created["decisions"] == [] and created["gates"] == []
    assert created["can_approve"] is False
    assert created["approval_blockers"] == ["you cannot approve your own request"]
    assert PromotionRequest.objects.get().pk == created["id"]


def test_create_with_attached_runs_and_explicit_target(api, promo):
    p = promo
    run = run_services.run_create(actor=p["developer"], pipeline=p["pipeline"], environment=p["development"])
    body = {
        "pipeline": p["pipeline"].pk,
        "version": 1,
        "source": "development",
        "target": "staging",
        "attached_runs": [run.pk],
        "compare_url": "https://git.example.com/compare/a...b",
    }
    response = api(p["developer"]).post(PROMOTIONS, body, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["attached_runs"] == [run.pk]
    assert response.json()["compare_url"] == "https://git.example.com/compare/a...b"


def test_idempotency_key_replays_the_same_request(api, promo):
    p = promo
    client = api(p["developer"])
    body = {"pipeline": p["pipeline"].pk, "version": 1, "source": "development", "reason": "retry-safe"}
    first = client.post(PROMOTIONS, body, format="json", HTTP_IDEMPOTENCY_KEY="deploy-42")
    assert first.status_code == 201, first.content
    again = client.post(PROMOTIONS, body, format="json", HTTP_IDEMPOTENCY_KEY="deploy-42")
    assert again.status_code == 200, again.content
    assert again.json()["id"] == first.json()["id"]
    assert PromotionRequest.objects.count() == 1
    # the same key with another body is a conflict, not a second request
    other = client.post(
        PROMOTIONS, {**body, "reason": "something else"}, format="json", HTTP_IDEMPOTENCY_KEY="deploy-42"
    )
    assert_error(other, 409, contains="Idempotency-Key")
    assert PromotionRequest.objects.count() == 1
    # without a key, the same body is refused as a duplicate of the open request
    assert_error(client.post(PROMOTIONS, body, format="json"), 409, contains="open request")
    # keys are per person: another requester's identical key does not replay the developer's request
    assert PromotionRequest.objects.get().idempotency_key == "deploy-42"


@pytest.mark.parametrize("key", ["has space", "x" * 201, ""])
def test_a_malformed_idempotency_key_is_refused(api, promo, key):
    p = promo
    body = {"pipeline": p["pipeline"].pk, "version": 1, "source": "development"}
    response = api(p["developer"]).post(PROMOTIONS, body, format="json", HTTP_IDEMPOTENCY_KEY=key)
    assert_error(response, 400, field="Idempotency-Key")
    assert PromotionRequest.objects.count() == 0


@pytest.mark.parametrize(
    "change, field",
    [
        ({"version": 9}, "version"),
        ({"pipeline": 999999}, "pipeline"),
        ({"source": "nowhere"}, "source"),
        ({"target": "production"}, "target"),  # skips staging
        ({"target": "nowhere"}, "target"),
        ({"source": "staging"}, "version"),  # v1 never ran in staging
        ({"attached_runs": [999999]}, "attached_runs"),
        ({"compare_url": "not a url"}, "compare_url"),
        ({"ticket": "x" * 101}, "ticket"),
        ({"version": "1"}, "version"),
        ({"reason": None}, "reason"),
        ({"unknown": 1}, "unknown"),
    ],
)
def test_create_bad_input(api, promo, change, field):
    p = promo
    body = {"pipeline": p["pipeline"].pk, "version": 1, "source": "development", **change}
    before = rows()
    assert_error(api(p["developer"]).post(PROMOTIONS, body, format="json"), 400, field=field)
    assert rows() == before


def test_create_permissions(api, promo, outsider):
    p = promo
    body = {"pipeline": p["pipeline"].pk, "version": 1, "source": "development"}
    # the staging approver may view development but not request promotions into staging
    assert_error(api(p["staging_approver"]).post(PROMOTIONS, body, format="json"), 403, contains="request_promotion")
    # an outsider cannot even see the pipeline
    assert_error(api(outsider).post(PROMOTIONS, body, format="json"), 400, field="pipeline")
    assert PromotionRequest.objects.count() == 0


def test_plans_hold_secret_references_only(api, promo, org, org_admin):
    p = promo
    secret = secret_services.secret_create(
        actor=org_admin, organization=org, name="reporting_pw", value=CANARY, allowed_environments=[p["staging"]]
    )
    connection_services.connection_binding_set(
        actor=org_admin,
        role=ConnectionRole.objects.get(organization=org, name="reporting"),
        environment=p["staging"],
        params={"path": str(p["paths"]["staging"]["target"])},
        credential=secret,
    )
    client = api(p["developer"])
    response = client.post(PROMOTIONS, {"pipeline": p["pipeline"].pk, "version": 1, "source": "development"})
    assert response.status_code == 201, response.content
    assert CANARY not in response.content.decode()
    assert "reporting_pw" in response.content.decode()  # the reference is shown
    for url in (promotion_url(response.json()["id"]), PROMOTIONS):
        assert CANARY not in api(p["staging_approver"]).get(url).content.decode()


# --- listing and reading --------------------------------------------------------------------------------------


def test_list_filters(api, promo, org, org_admin):
    p = promo
    pending = request_staging(p)
    mine = api(p["developer"])
    approver = api(p["staging_approver"])

    awaiting = approver.get(PROMOTIONS, {"state": "pending", "awaiting_me": "true"}).json()
    assert [r["id"] for r in awaiting["results"]] == [pending.pk]
    assert mine.get(PROMOTIONS, {"state": "pending", "awaiting_me": "true"}).json()["results"] == []  # own request
    assert api(p["prod_approver"]).get(PROMOTIONS, {"awaiting_me": "true"}).json()["results"] == []  # not a target
    assert [r["id"] for r in mine.get(PROMOTIONS, {"mine": "true"}).json()["results"]] == [pending.pk]
    assert approver.get(PROMOTIONS, {"mine": "true"}).json()["results"] == []
    assert [r["id"] for r in approver.get(PROMOTIONS, {"mine": "false"}).json()["results"]] == [pending.pk]

    for params, expected in [
        ({"target": "staging"}, [pending.pk]),
        ({"target": "production"}, []),
        ({"source": "development"}, [pending.pk]),
        ({"pipeline": p["pipeline"].pk}, [pending.pk]),
        ({"project": p["project"].pk}, [pending.pk]),
        ({"project": p["project"].pk + 1000}, []),
        ({"state": "approved"}, []),
        ({"search": "orders"}, [pending.pk]),
    ]:
        assert [r["id"] for r in mine.get(PROMOTIONS, params).json()["results"]] == expected, params

    # once decided, it no longer awaits the approver
    assert approver.post(promotion_url(pending.pk, "approve"), {"comment": "ok"}, format="json").status_code == 200
    assert approver.get(PROMOTIONS, {"state": "pending", "awaiting_me": "true"}).json()["results"] == []
    assert [r["id"] for r in approver.get(PROMOTIONS, {"awaiting_me": "false"}).json()["results"]] == [pending.pk]
    listed = mine.get(PROMOTIONS, {"state": "approved", "ordering": "-created_at"}).json()["results"]
    assert [r["id"] for r in listed] == [pending.pk] and listed[0]["current_approvals"] == 1
    assert "plan" not in listed[0]


def test_list_bad_filters(api, promo):
    client = api(promo["developer"])
    for params, field in [
        ({"state": "sleeping"}, "state"),
        ({"awaiting_me": "maybe"}, "awaiting_me"),
        ({"mine": ""}, "mine"),
        ({"pipeline": "abc"}, "pipeline"),
    ]:
        assert_error(client.get(PROMOTIONS, params), 400, field=field)


def test_detail_and_visibility(api, promo, outsider):
    p = promo
    request = request_staging(p)
    approver = api(p["staging_approver"])
    body = approver.get(promotion_url(request.pk)).json()
    assert body["can_approve"] is True and body["approval_blockers"] == []
    assert body["plan_hash"] == request.plan_hash and body["plan"]["readiness"]["ready"] is True
    approver.post(promotion_url(request.pk, "approve"), {"plan_hash": request.plan_hash}, format="json")
    body = approver.get(promotion_url(request.pk)).json()
    assert body["state"] == "approved" and body["can_approve"] is False
    assert body["approval_blockers"] == ["the request is approved"]
    [decision] = body["decisions"]
    assert decision["approver"] == "stager" and decision["decision"] == "approve" and decision["counts"] is True
    assert decision["plan_hash"] == request.plan_hash
    assert body["rule_status"][0]["met"] is True and body["rule_status"][0]["approved_by"] == ["stager"]
    # who may not view the target sees nothing
    assert_error(api(outsider).get(promotion_url(request.pk)), 404)
    assert_error(api(p["prod_approver"]).get(promotion_url(request.pk)), 404)
    assert api(p["prod_approver"]).get(PROMOTIONS).json()["results"] == []


def test_detail_shows_gates_and_stale_decisions(api, promo, org_admin):
    """Production needs validation: the gate is in the plan; a decision on an older plan does not count."""
    p = promo
    staging = request_staging(p)
    services.promotion_approve(actor=p["staging_approver"], request=staging)
    services.promotion_execute(staging.pk)
    run = run_services.run_create(actor=org_admin, pipeline=p["pipeline"], environment=p["staging"])
    run_services.run_execute(run.pk)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.error
    production, _ = services.promotion_request_create(
        actor=p["developer"], pipeline=p["pipeline"], version=p["version"], source=p["staging"]
    )
    services.promotion_approve(actor=p["prod_approver"], request=production, comment="looks fine")
    ApprovalDecision.objects.filter(request=production).update(plan_hash="sha256:older")
    body = api(p["prod_approver2"]).get(promotion_url(production.pk)).json()
    [gate] = body["gates"]
    assert gate["gate"] == "validation" and gate["passed"] is True and gate["run"] == run.pk
    [decision] = body["decisions"]
    assert decision["counts"] is False and decision["comment"] == "looks fine"
    assert body["rule_status"][0]["approvals"] == 0 and body["current_approvals"] == 0
    assert body["can_approve"] is True
    # the first approver may decide again on the new plan
    assert api(p["prod_approver"]).get(promotion_url(production.pk)).json()["can_approve"] is True


def test_list_and_detail_query_counts_do_not_grow(api, promo, org, org_admin, django_assert_max_num_queries):
    p = promo
    approvers = [
        member_with(org, org_admin, f"reviewer{i}", p["staging"], perms.VIEW, perms.APPROVE_PROMOTION) for i in range(4)
    ]
    rule = ApprovalRule.objects.get(pk=p["staging_rule"].pk)
    rule.required_approvals = 6
    services.rule_save(actor=org_admin, rule=rule)
    first = request_staging(p, reason="first")
    services.promotion_approve(actor=approvers[0], request=first)
    client = api(p["staging_approver"])

    def count(url, params=None) -> int:
        with CaptureQueriesContext(connection) as queries:
            assert client.get(url, params or {}).status_code == 200
        return len(queries)

    list_few = count(PROMOTIONS)
    awaiting_few = count(PROMOTIONS, {"state": "pending", "awaiting_me": "true"})
    detail_few = count(promotion_url(first.pk))

    for approver in approvers[1:]:
        services.promotion_approve(actor=approver, request=first, comment=f"ok from {approver}")
    services.promotion_cancel(actor=p["developer"], request=first)
    for index in range(4):
        request = request_staging(p, reason=f"again {index}")
        services.promotion_approve(actor=approvers[index], request=request)
        if index < 3:
            services.promotion_cancel(actor=p["developer"], request=request)
    assert PromotionRequest.objects.count() == 5 and ApprovalDecision.objects.count() == 8

    with django_assert_max_num_queries(list_few):
        assert len(client.get(PROMOTIONS).json()["results"]) == 5
    with django_assert_max_num_queries(awaiting_few):
        assert len(client.get(PROMOTIONS, {"state": "pending", "awaiting_me": "true"}).json()["results"]) == 1
    with django_assert_max_num_queries(detail_few):
        body = client.get(promotion_url(first.pk)).json()
    assert len(body["decisions"]) == 4 and body["rule_status"][0]["approvals"] == 4


# --- deciding ----------------------------------------------------------------------------------------------------


def test_approve(api, promo):
    p = promo
    request = request_staging(p)
    before = rows()
    # bad input: nothing written
    assert_error(
        api(p["staging_approver"]).post(promotion_url(request.pk, "approve"), {"comment": 5}), 400, field="comment"
    )
    assert_error(
        api(p["staging_approver"]).post(promotion_url(request.pk, "approve"), {"plan_hash": "x" * 72}),
        400,
        field="plan_hash",
    )
    # permissions: no approve permission, own request, cannot see
    # separation of duties is said first, with or without the approve permission
    assert_error(api(p["developer"]).post(promotion_url(request.pk, "approve")), 403, contains="your own request")
    env_services.permission_grant(
        actor=p["org_admin"], environment=p["staging"], codename=perms.APPROVE_PROMOTION, user=p["developer"]
    )
    assert_error(api(p["developer"]).post(promotion_url(request.pk, "approve")), 403, contains="your own request")
    assert_error(api(p["prod_approver"]).post(promotion_url(request.pk, "approve")), 404)
    # a plan hash that is not the current one: the approver reviewed something else
    stale = api(p["staging_approver"]).post(promotion_url(request.pk, "approve"), {"plan_hash": "sha256:old"})
    assert_error(stale, 409, contains="plan changed")
    assert rows() == before

    response = api(p["staging_approver"]).post(
        promotion_url(request.pk, "approve"), {"comment": "lgtm", "plan_hash": request.plan_hash}, format="json"
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["state"] == "approved" and body["decisions"][0]["comment"] == "lgtm"
    # approving again: the state machine refuses, naming the state
    again = api(p["staging_approver"]).post(promotion_url(request.pk, "approve"))
    assert_error(again, 409, contains="it is approved")


def test_approve_twice_on_a_pending_request_is_a_conflict(api, promo):
    p = promo
    rule = ApprovalRule.objects.get(pk=p["staging_rule"].pk)
    rule.required_approvals = 2
    services.rule_save(actor=p["org_admin"], rule=rule)
    request = request_staging(p)
    client = api(p["staging_approver"])
    assert client.post(promotion_url(request.pk, "approve")).json()["state"] == "pending"
    assert_error(client.post(promotion_url(request.pk, "approve")), 409, contains="already decided")
    assert ApprovalDecision.objects.count() == 1


def test_reject(api, promo):
    p = promo
    request = request_staging(p)
    client = api(p["staging_approver"])
    before = rows()
    assert_error(client.post(promotion_url(request.pk, "reject"), {}, format="json"), 400, field="comment")
    assert_error(client.post(promotion_url(request.pk, "reject"), {"comment": ""}, format="json"), 400, field="comment")
    assert_error(api(p["developer"]).post(promotion_url(request.pk, "reject"), {"comment": "no"}), 403)
    assert rows() == before
    response = client.post(promotion_url(request.pk, "reject"), {"comment": "wrong table"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["state"] == "rejected" and response.json()["decisions"][0]["decision"] == "reject"
    assert_error(client.post(promotion_url(request.pk, "reject"), {"comment": "again"}), 409, contains="it is rejected")
    assert_error(client.post(promotion_url(request.pk, "approve")), 409, contains="it is rejected")


def test_cancel(api, promo):
    p = promo
    request = request_staging(p)
    before = rows()
    assert_error(api(p["developer"]).post(promotion_url(request.pk, "cancel"), {"comment": 1}), 400, field="comment")
    assert_error(api(p["staging_approver"]).post(promotion_url(request.pk, "cancel")), 403)
    assert rows() == before
    response = api(p["developer"]).post(promotion_url(request.pk, "cancel"), {"comment": "not yet"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["state"] == "cancelled"
    assert_error(api(p["developer"]).post(promotion_url(request.pk, "cancel")), 409, contains="it is cancelled")


def _failed_request(p):
    """Approved, then v1 reached staging another way: the worker fails it ('already deployed')."""
    request = request_staging(p)
    services.promotion_approve(actor=p["staging_approver"], request=request)
    run_services.deploy(actor=p["org_admin"], pipeline=p["pipeline"], environment=p["staging"], version=p["version"])
    services.promotion_execute(request.pk)
    request.refresh_from_db()
    assert request.state == PromotionState.FAILED, request.state
    return request


def test_retry(api, promo):
    p = promo
    pending = request_staging(p)
    assert_error(api(p["developer"]).post(promotion_url(pending.pk, "retry")), 409, contains="it is pending")
    services.promotion_cancel(actor=p["developer"], request=pending)
    failed = _failed_request(p)
    assert_error(api(p["staging_approver"]).post(promotion_url(failed.pk, "retry")), 403)
    assert_error(api(p["prod_approver"]).post(promotion_url(failed.pk, "retry")), 404)
    response = api(p["developer"]).post(promotion_url(failed.pk, "retry"))
    assert response.status_code == 200, response.content
    assert response.json()["state"] == "approved" and response.json()["failure_reason"] == ""


def test_override_freeze(api, promo, org, org_admin):
    p = promo
    request = request_staging(p)
    url = promotion_url(request.pk, "override-freeze")
    before = rows()
    assert_error(api(org_admin).post(url, {}, format="json"), 400, field="reason")
    assert_error(api(org_admin).post(url, {"reason": "x" * 501}, format="json"), 400, field="reason")
    assert_error(api(p["developer"]).post(url, {"reason": "hotfix"}, format="json"), 403)
    assert rows() == before
    asked = api(org_admin).post(url, {"reason": "hotfix for the outage"}, format="json")
    assert asked.status_code == 200, asked.content
    assert asked.json()["freeze_override_requested_by"] == "orgadmin"
    assert asked.json()["freeze_override_confirmed_by"] is None
    assert_error(api(org_admin).post(url, {"reason": "me again"}, format="json"), 403, contains="second person")
    manager = member_with(org, org_admin, "manager", p["staging"], perms.VIEW, perms.MANAGE)
    confirmed = api(manager).post(url, {"reason": "confirmed on the bridge call"}, format="json")
    assert confirmed.status_code == 200, confirmed.content
    assert confirmed.json()["freeze_override_confirmed_by"] == "manager"
    assert_error(api(manager).post(url, {"reason": "again"}, format="json"), 409, contains="already confirmed")
    services.promotion_cancel(actor=p["developer"], request=request)
    assert_error(api(manager).post(url, {"reason": "late"}, format="json"), 409, contains="it is cancelled")


def test_api_key_scopes(api, promo, org, org_admin):
    p = promo
    request = request_staging(p)
    _, read_token = tenancy_services.api_key_create(
        actor=p["staging_approver"], organization=org, name="reader", scopes=["read"]
    )
    reader = api(token=read_token)
    assert reader.get(PROMOTIONS).status_code == 200
    assert reader.get(promotion_url(request.pk)).status_code == 200
    assert_error(reader.post(promotion_url(request.pk, "approve")), 403, contains="write")
    _, write_token = tenancy_services.api_key_create(
        actor=p["staging_approver"], organization=org, name="writer", scopes=["write"]
    )
    response = api(token=write_token).post(promotion_url(request.pk, "approve"), {"comment": "via CI"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["state"] == "approved"


# --- rollback --------------------------------------------------------------------------------------------------------


@pytest.fixture
def two_deployments(promo, org_admin):
    """v1 then v2 deployed in development; one run of v2 there."""
    p = promo
    v2 = pipeline_services.pipeline_version_create(
        actor=org_admin, pipeline=p["pipeline"], graph={**GRAPH}, message="v2"
    )
    deployment = run_services.deploy_direct(
        actor=org_admin, pipeline=p["pipeline"], environment=p["development"], version=v2
    )
    run = run_services.run_create(actor=org_admin, pipeline=p["pipeline"], environment=p["development"])
    run_services.run_execute(run.pk)
    return {"deployment": deployment, "run": run, "v2": v2}


def test_rollback(api, promo, two_deployments):
    p, d = promo, two_deployments
    response = api(p["org_admin"]).post(rollback_url(d["deployment"].pk), {"reason": "bad totals"}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["deployment"]["version"] == 1 and body["deployment"]["is_active"] is True
    assert body["deployment"]["previous"] == d["deployment"].pk
    assert "bad totals" in body["deployment"]["note"]
    assert [r["id"] for r in body["runs"]] == [d["run"].pk] and body["runs"][0]["version"] == 2
    assert Deployment.objects.filter(environment=p["development"], is_active=True).get().version.number == 1
    # the rolled-back deployment is no longer active: rolling it back again is refused
    again = api(p["org_admin"]).post(rollback_url(d["deployment"].pk), {}, format="json")
    assert_error(again, 409, contains="active deployment")


def test_rollback_bad_input_and_permissions(api, promo, two_deployments, outsider):
    p, d = promo, two_deployments
    url = rollback_url(d["deployment"].pk)
    before = rows()
    assert_error(api(p["org_admin"]).post(url, {"reason": 5}, format="json"), 400, field="reason")
    assert_error(api(p["org_admin"]).post(url, {"reason": "x" * 401}, format="json"), 400, field="reason")
    assert_error(api(p["org_admin"]).post(url, {"why": "x"}, format="json"), 400, field="why")
    # the developer sees development but does not manage it; others cannot see the deployment at all
    assert_error(api(p["developer"]).post(url, {}, format="json"), 403, contains="manage_environment")
    assert_error(api(p["prod_approver"]).post(url, {}, format="json"), 403)  # views development as a member
    assert_error(api(outsider).post(url, {}, format="json"), 404)
    assert_error(api(p["org_admin"]).post(rollback_url(999999), {}, format="json"), 404)
    assert rows() == before


def test_rollback_of_a_promotion_marks_it_rolled_back(api, promo):
    p = promo
    request = request_staging(p)
    services.promotion_approve(actor=p["staging_approver"], request=request)
    services.promotion_execute(request.pk)
    request.refresh_from_db()
    assert request.state == PromotionState.DEPLOYED
    # nothing was deployed in staging before: nothing to roll back to
    response = api(p["org_admin"]).post(rollback_url(request.deployment_id), {}, format="json")
    assert_error(response, 409, contains="no earlier deployment")
    request.refresh_from_db()
    assert request.state == PromotionState.DEPLOYED
    assert_error(api(p["developer"]).post(promotion_url(request.pk, "cancel")), 409, contains="it is deployed")


def test_responses_with_real_data_conform_to_the_published_schema(api, promo, org, two_deployments):
    """The fuzzer's world has no promotions: check rich responses (plan, gates, decisions, rollback)
    against the OpenAPI schema here."""
    p = promo
    staging, _ = services.promotion_request_create(
        actor=p["developer"], pipeline=p["pipeline"], version=two_deployments["v2"], source=p["development"]
    )
    services.rule_save(actor=p["org_admin"], rule=_with(p["staging_rule"], required_approvals=2))
    services.promotion_approve(actor=p["staging_approver"], request=staging, comment="ok")
    _, token = tenancy_services.api_key_create(actor=p["org_admin"], organization=org, name="check", scopes=["admin"])
    calls = [
        ("/api/v1/promotions/", "GET", {}, None),
        ("/api/v1/promotions/{id}/", "GET", {"id": staging.pk}, None),
        ("/api/v1/approval-rules/", "GET", {}, None),
        ("/api/v1/approval-rules/{id}/", "GET", {"id": p["production_rule"].pk}, None),
        ("/api/v1/promotions/{id}/cancel/", "POST", {"id": staging.pk}, {"comment": "later"}),
        ("/api/v1/deployments/{id}/rollback/", "POST", {"id": two_deployments["deployment"].pk}, {"reason": "r"}),
        ("/api/v1/promotions/", "POST", {}, {"pipeline": p["pipeline"].pk, "version": 2, "source": "development"}),
    ]
    # Requests (loading the schema too) go straight to the WSGI handler, whose signals would close
    # the test's connection.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        from schemathesis.specs.openapi import checks

        from tests.test_api_fuzz import EXCLUDED_CHECKS, schema

        for path, method, parameters, body in calls:
            case = schema[path][method].Case(path_parameters=parameters, **({"body": body} if body else {}))
            response = case.call(headers={"Authorization": f"Bearer {token}"})
            assert response.status_code in (200, 201), (path, response.content[:300])
            case.validate_response(response, excluded_checks=[*EXCLUDED_CHECKS, checks.ignored_auth])
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def _with(rule: ApprovalRule, **changes) -> ApprovalRule:
    rule = ApprovalRule.objects.get(pk=rule.pk)
    for name, value in changes.items():
        setattr(rule, name, value)
    return rule
