"""Benchmark of list endpoints, changelists and list pages when rows carry realistic blobs.

Two organizations with the same rows (runs, promotion requests, deployments): in one the newest
50 runs and requests carry a resolved configuration / frozen plan of BENCH_BLOB_VARIABLES variables
(default 2,000, smaller than the issue's 10,000 to keep the run in minutes on 2 shared cores), in
the other the same rows carry small ones. The floor of each figure is the same page of the
small-blob organization, measured in the same run. Sizes: BENCH_LIST_ROWS (default 100,10000).

Run: make bench."""

import os

from common import ratio, report, setup_django, timed

ROWS = [int(s) for s in os.environ.get("BENCH_LIST_ROWS", "100,10000").split(",")]
BLOB_VARIABLES = int(os.environ.get("BENCH_BLOB_VARIABLES", "2000"))
HEAVY_ROWS = 50


def _config(variables: int) -> dict:
    return {
        "variables": {
            f"var_{i:05d}": {"value": f"value of variable {i} in production", "source": "override:organization"}
            for i in range(variables)
        },
        "connections": {},
        "policy": {},
    }


def build(slug: str, rows: int, variables: int):
    from django.contrib.auth import get_user_model

    from apps.approvals.models import PromotionRequest, PromotionState
    from apps.core.models import FrozenDocument
    from apps.environments import services as env_services
    from apps.pipelines import services as pipeline_services
    from apps.runs.models import Deployment, Run, RunStatus
    from apps.tenancy import services as tenancy_services

    user_model = get_user_model()
    staff, _ = user_model.objects.get_or_create(
        username="bench-staff", defaults={"is_staff": True, "is_superuser": True}
    )
    owner = user_model.objects.create_user(f"owner-{slug}", is_staff=True)
    org = tenancy_services.organization_create(
        actor=staff, name=slug, slug=slug, edition="enterprise", max_environments=5, owner=owner
    )
    production = env_services.environment_create(actor=owner, organization=org, name="Production", kind="production")
    staging = env_services.environment_create(
        actor=owner, organization=org, name="Staging", kind="staging", promotes_to=production
    )
    project = pipeline_services.project_create(actor=owner, organization=org, name="P")
    pipeline = pipeline_services.pipeline_create(actor=owner, project=project, name="Pipe")
    graph = {"nodes": [{"id": "src", "type": "source", "connection": "wh", "query": "SELECT 1"}], "edges": []}
    version = pipeline_services.pipeline_version_create(actor=owner, pipeline=pipeline, graph=graph)
    small, big = _config(3), _config(variables)
    small_plan = FrozenDocument.store({"config_before": small, "config_after": small})
    big_plan = FrozenDocument.store({"config_before": big, "config_after": big})
    # Bulk set-up of fixtures (oldest first, so the heavy rows are the newest page).
    for start in range(0, rows, 1000):
        count = min(1000, rows - start)
        heavy = [start + i >= rows - HEAVY_ROWS for i in range(count)]
        Run.objects.bulk_create(
            Run(
                pipeline=pipeline,
                version=version,
                environment=production,
                status=RunStatus.SUCCEEDED,
                requested_by=owner,
                resolved=big if is_heavy else small,
                metrics={"src": {"row_count": 1}},
                log_excerpt="log line\n" * (2000 if is_heavy else 2),
            )
            for is_heavy in heavy
        )
        PromotionRequest.objects.bulk_create(
            PromotionRequest(
                organization=org,
                pipeline=pipeline,
                version=version,
                source=staging,
                target=production,
                requested_by=owner,
                state=PromotionState.CANCELLED,
                plan_document_id=big_plan if is_heavy else small_plan,
                plan_hash="sha256:bench",
            )
            for is_heavy in heavy
        )
        Deployment.objects.bulk_create(
            Deployment(pipeline=pipeline, environment=production, version=version, is_active=False)
            for _ in range(count)
        )
    return owner, pipeline


def main():
    setup_django()
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    rows = []
    for size in ROWS:
        heavy_owner, heavy_pipeline = build(f"heavy-{size}", size, BLOB_VARIABLES)
        light_owner, light_pipeline = build(f"light-{size}", size, 3)
        clients = {}
        for name, user in (("heavy", heavy_owner), ("light", light_owner)):
            clients[name] = Client()
            clients[name].force_login(user)
        pages = [
            ("GET /api/v1/promotions/", lambda _p: "/api/v1/promotions/"),
            ("GET /api/v1/runs/", lambda _p: "/api/v1/runs/"),
            ("GET /api/v1/deployments/", lambda _p: "/api/v1/deployments/"),
            ("admin promotion requests", lambda _p: "/admin/approvals/promotionrequest/"),
            ("admin runs", lambda _p: "/admin/runs/run/"),
            ("web pipeline page", lambda p: f"/pipelines/{p.pk}/"),
        ]
        for label, url_of in pages:

            def get(name, url, clients=clients):
                response = clients[name].get(url)
                assert response.status_code == 200, (url, response.status_code)

            heavy_url, light_url = url_of(heavy_pipeline), url_of(light_pipeline)
            floor = timed(lambda light_url=light_url: get("light", light_url))
            measured = timed(lambda heavy_url=heavy_url: get("heavy", heavy_url))
            with CaptureQueriesContext(connection) as queries:
                get("heavy", heavy_url)
            rows.append(
                {
                    "rows": size,
                    "figure": label,
                    "small_blobs_ms": round(floor["median"] * 1000, 2),
                    "realistic_blobs_ms": round(measured["median"] * 1000, 2),
                    "ratio": ratio(measured, floor),
                    "queries": len(queries),
                }
            )
    report(
        "lists",
        f"List pages, newest {HEAVY_ROWS} rows with {BLOB_VARIABLES}-variable blobs vs small blobs",
        rows,
        [
            ("rows", "rows"),
            ("figure", "figure"),
            ("small_blobs_ms", "floor ms"),
            ("realistic_blobs_ms", "measured ms"),
            ("ratio", "ratio"),
            ("queries", "queries"),
        ],
        blob_variables=BLOB_VARIABLES,
    )


if __name__ == "__main__":
    main()
