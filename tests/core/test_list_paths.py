"""Lists never carry blobs: query-count guards at 1 and 50 rows for the list endpoints, changelists and
list pages that show runs, promotions, deployments, versions, overrides and triggers (rows with realistic blobs),
and a check that no list response contains a plan, resolved answer, log or graph."""

import pytest
from django.contrib import admin
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.approvals.models import PromotionRequest, PromotionState
from apps.core.admin import LightChangelistMixin
from apps.core.models import FrozenDocument
from apps.runs.models import Deployment, PipelineTrigger, Run, RunStatus, TriggerKind
from apps.secrets import services as secret_services
from apps.variables.models import PersonalOverride, Variable, VariableOverride
from tests.runs.conftest import run_setup  # noqa: F401  (fixture)

BLOB = "BLOB-CANARY"
ADMIN_CEILING = 25  # queries for any changelist, whatever the number of rows


def _blob(size: int = 300) -> dict:
    return {f"{BLOB}-{i}": {"value": f"{BLOB} value {i}", "source": "default"} for i in range(size)}


@pytest.fixture
def world(run_setup, stages, org, org_admin):  # noqa: F811
    """Adds `n` rows carrying blobs to runs, promotions, deployments and overrides."""
    pipeline, version = run_setup["pipeline"], run_setup["version"]
    environments = list(stages.values())
    signing_secret = secret_services.secret_create(
        actor=org_admin, organization=org, name="list_hook_key", value="list-hook-signing-value"
    )

    def grow(n: int) -> None:
        plan = FrozenDocument.store({"config_after": _blob(), "log": BLOB})
        start = Run.objects.count()
        Run.objects.bulk_create(
            Run(
                pipeline=pipeline,
                version=version,
                environment=environments[i % 3],
                status=RunStatus.SUCCEEDED,
                requested_by=org_admin,
                resolved={"variables": _blob()},
                metrics={"orders_out": {"row_count": i, "note": BLOB * 20}},
                log_excerpt=BLOB * 500,
            )
            for i in range(start, start + n)
        )
        PromotionRequest.objects.bulk_create(
            PromotionRequest(
                organization=org,
                pipeline=pipeline,
                version=version,
                source=stages["staging"],
                target=stages["production"],
                requested_by=org_admin,
                state=PromotionState.CANCELLED,
                plan_document_id=plan,
                plan_hash=f"sha256:{i}",
            )
            for i in range(n)
        )
        Deployment.objects.bulk_create(
            Deployment(pipeline=pipeline, environment=environments[i % 3], version=version, is_active=False)
            for i in range(n)
        )
        start = Variable.objects.count()
        variables = Variable.objects.bulk_create(
            Variable(organization=org, name=f"list_var_{i}", type="string") for i in range(start, start + n)
        )
        VariableOverride.objects.bulk_create(
            VariableOverride(variable=v, environment=environments[i % 3], value=f"value {i}")
            for i, v in enumerate(variables)
        )
        PersonalOverride.objects.bulk_create(
            PersonalOverride(user=org_admin, variable=v, environment=stages["development"], value=f"mine {i}")
            for i, v in enumerate(variables)
        )
        start = PipelineTrigger.objects.count()
        PipelineTrigger.objects.bulk_create(
            PipelineTrigger(
                pipeline=pipeline,
                environment=environments[i % 3],
                kind=TriggerKind.WEBHOOK,
                token=f"list-token-{i}",
                signing_secret=signing_secret,
                owner=org_admin,
                enabled=i % 2 == 0,
            )
            for i in range(start, start + n)
        )

    return {"pipeline": pipeline, "grow": grow}


def _queries(client, url) -> tuple[int, str]:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, response.content[:500]
    return len(captured), response.content.decode()


API_LISTS = [
    "/api/v1/runs/",
    "/api/v1/promotions/",
    "/api/v1/deployments/",
    "/api/v1/variable-overrides/",
    "/api/v1/personal-overrides/",
    "/api/v1/pipelines/{pipeline}/versions/",
    "/api/v1/triggers/",
]
CHANGELISTS = [
    "runs_run",
    "runs_deployment",
    "approvals_promotionrequest",
    "variables_variableoverride",
    "variables_personaloverride",
    "variables_variable",
    "pipelines_pipelineversion",
    "runs_pipelinetrigger",
]
PAGES = ["web:pipeline-detail", "web:inbox"]


def _urls(pipeline) -> list[str]:
    urls = [url.format(pipeline=pipeline.pk) for url in API_LISTS]
    urls += [reverse(f"admin:{name}_changelist") for name in CHANGELISTS]
    urls += [reverse("web:pipeline-detail", args=[pipeline.pk]), reverse("web:inbox")]
    return urls


def test_lists_changelists_and_pages_do_not_grow_with_rows_and_carry_no_blob(world, api, org_admin):
    client = api(org_admin)
    world["grow"](1)
    urls = _urls(world["pipeline"])
    one = {url: _queries(client, url)[0] for url in urls}
    world["grow"](49)
    for url in urls:
        count, body = _queries(client, url)
        assert count <= one[url], f"{url}: {count} queries at 50 rows, {one[url]} at 1"
        assert BLOB not in body, f"{url} rendered a blob"
        if "/admin/" in url:
            assert count <= ADMIN_CEILING, f"{url}: {count} queries"


def test_list_queries_never_select_heavy_columns(world, api, org_admin):
    """The SQL of a list names no blob column (deferred, not just left out of the response)."""
    world["grow"](3)
    client = api(org_admin)
    heavy = ['"resolved"', '"log_excerpt"', '"graph"', '"body"', '."metrics"']
    for url in _urls(world["pipeline"]):
        if not url.startswith(("/api/", "/admin/")):
            continue  # list pages show a run's metrics (and nothing heavier)
        with CaptureQueriesContext(connection) as captured:
            assert client.get(url).status_code == 200
        for query in captured.captured_queries:
            assert not any(column in query["sql"] for column in heavy), (url, query["sql"][:300])


def test_details_still_show_the_blobs(world, api, org_admin):
    world["grow"](1)
    client = api(org_admin)
    run = Run.objects.latest("id")
    assert BLOB in client.get(f"/api/v1/runs/{run.pk}/").content.decode()
    promotion = PromotionRequest.objects.latest("id")
    assert promotion.plan["log"] == BLOB
    assert BLOB in client.get(reverse("admin:runs_run_change", args=[run.pk])).content.decode()


def test_every_model_admin_has_a_light_changelist():
    ours = [a for a in admin.site._registry.values() if type(a).__module__.startswith("apps.")]
    assert len(ours) > 20
    assert [type(a).__name__ for a in ours if not isinstance(a, LightChangelistMixin)] == []


def test_a_plan_is_stored_once_and_history_rows_carry_its_digest(world, org_admin):
    world["grow"](2)
    plans = {p.plan_document_id for p in PromotionRequest.objects.all()}
    assert len(plans) == 1 and FrozenDocument.objects.filter(digest__in=plans).count() == 1
    history = PromotionRequest.history.model
    assert "plan" not in {f.name for f in history._meta.concrete_fields}
    request = PromotionRequest.objects.first()
    request.plan = {**request.plan, "readiness": {"ready": True}}
    request.save()
    assert request.plan_document_id not in plans and request.plan["readiness"] == {"ready": True}
    request.refresh_from_db()
    assert request.plan["log"] == BLOB and request.plan["readiness"] == {"ready": True}


@pytest.mark.parametrize("url", ["/api/v1/runs/", "/api/v1/promotions/", "/api/v1/notifications/"])
def test_large_lists_page_by_cursor_without_counting(world, api, org_admin, url):
    world["grow"](5)
    client = api(org_admin)
    with CaptureQueriesContext(connection) as captured:
        first = client.get(url, {"page_size": 2})
    assert first.status_code == 200
    assert not any("COUNT(" in q["sql"].upper() for q in captured.captured_queries)
    body = first.json()
    assert "count" not in body and body["previous"] is None
    if url != "/api/v1/notifications/":  # the admin's inbox is empty here
        second = client.get(body["next"])
        assert second.status_code == 200
        assert not {r["id"] for r in body["results"]} & {r["id"] for r in second.json()["results"]}
    for bad in ("nonsense", "cD0xJm89MQ%%", "x" * 300):
        response = client.get(url, {"cursor": bad})
        assert response.status_code == 400 and "cursor" in response.json()["error"]["fields"], response.content
    response = client.get(url, {"page_size": "0"})
    assert response.status_code == 400 and "page_size" in response.json()["error"]["fields"]
