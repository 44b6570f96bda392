"""The demo data brought to a realistic point through the services (what the browser test arranges
before it walks): v1 released to production with a production run as the baseline, and v2 — a
changed graph — validated in staging against that baseline, ready to be promoted to production."""

import copy
import time

from apps.approvals import services as approvals
from apps.approvals.models import PromotionState
from apps.demo.services import DEMO_GRAPH, seed_demo
from apps.pipelines import services as pipeline_services
from apps.runs import services as run_services
from apps.runs.models import TERMINAL, Run, RunStatus


def run_in(actor, pipeline, environment, version=None) -> Run:
    """Create a run and see it succeed. A browser test's real worker may claim it first (run_create
    wakes it on commit); then run_execute leaves it alone, and the run finishes on the worker."""
    run = run_services.run_create(actor=actor, pipeline=pipeline, environment=environment, version=version)
    run_services.run_execute(run.pk)
    deadline = time.monotonic() + 60
    run.refresh_from_db()
    while run.status not in TERMINAL and time.monotonic() < deadline:
        time.sleep(0.1)
        run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, (run.status, run.error)
    return run


def promote(*, pipeline, version, source, requester, approvers, attached_runs=()):
    request, _ = approvals.promotion_request_create(
        actor=requester,
        pipeline=pipeline,
        version=version,
        source=source,
        reason=f"Release v{version.number}",
        attached_runs=list(attached_runs),
    )
    for approver in approvers:
        if request.state == PromotionState.PENDING:
            request = approvals.promotion_approve(actor=approver, request=request, plan_hash=request.plan_hash)
    approvals.promotion_execute(request.pk)
    request.refresh_from_db()
    assert request.state == PromotionState.DEPLOYED, request.failure_reason or request.blocked_reason
    return request


def v2_graph() -> dict:
    graph = copy.deepcopy(DEMO_GRAPH)
    source, destination = graph["nodes"]
    source["query"] = (
        "SELECT order_id, customer_id, ROUND(amount, 2) AS amount, created_at FROM {{ source_table }} ORDER BY order_id"
    )
    destination["description"] = "Orders mart, amounts rounded to cents"
    return graph


def release_candidate() -> dict:
    """Seed the demo and prepare v2 for production (see the module docstring)."""
    demo = seed_demo()
    users, stages, pipeline = demo["users"], demo["stages"], demo["pipeline"]
    admin, dev, approver1, approver2 = (users[n] for n in ("admin", "dev", "approver1", "approver2"))
    v1 = pipeline.versions.order_by("number").first()
    promote(pipeline=pipeline, version=v1, source=stages["development"], requester=dev, approvers=[approver1])
    staging_run = run_in(admin, pipeline, stages["staging"], v1)
    promote(
        pipeline=pipeline,
        version=v1,
        source=stages["staging"],
        requester=dev,
        approvers=[approver1, approver2],
        attached_runs=[staging_run],
    )
    run_in(admin, pipeline, stages["production"])  # the production baseline
    v2 = pipeline_services.pipeline_version_create(
        actor=dev,
        pipeline=pipeline,
        graph=v2_graph(),
        message="Round amounts to cents",
        git_repository="https://git.example.com/acme/pipelines",
        git_branch="main",
        git_commit="9b1e4d7c2a",
        git_tag="v1.1.0",
        git_merged=True,
        compare_url="https://git.example.com/acme/pipelines/compare/3f2a9c1...9b1e4d7c2a",
    )
    run_in(dev, pipeline, stages["development"], v2)
    promote(pipeline=pipeline, version=v2, source=stages["development"], requester=dev, approvers=[approver1])
    validation = run_in(admin, pipeline, stages["staging"], v2)
    assert validation.baseline and validation.baseline["passed"] is True, validation.baseline
    return {**demo, "v1": v1, "v2": v2, "validation": validation}
