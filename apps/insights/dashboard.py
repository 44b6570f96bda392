"""The admin index's dashboard: the state of the world for the administrator's organizations.

Pending promotions, the deployed version per pipeline × environment, failing runs and stuck
deliveries of the last 24 hours, environments frozen now, and recent configuration changes in
production; each section links to the changelist (or feed) with the matching filter. Everything
goes through the same visibility rules as the rest of the product, and each section costs a fixed
number of queries whatever the number of rows (it shows at most ROWS of them, plus a count)."""

from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import urlencode

from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from apps.approvals.models import OPEN_STATES, PromotionRequest
from apps.audit.selectors import audit_entries, audit_rows
from apps.environments.models import Environment, Kind
from apps.notifications.models import Delivery, DeliveryStatus
from apps.runs.models import Deployment, Run, RunStatus

ROWS = 10
WINDOW = timedelta(hours=24)
STUCK_AFTER = timedelta(minutes=10)
CONFIGURATION_MODELS = ("variables.VariableOverride", "connections.ConnectionBinding", "environments.RuntimePolicy")


@dataclass
class Section:
    key: str
    title: str
    link: str
    link_label: str
    count: int = 0
    rows: list = field(default_factory=list)
    empty: str = "Nothing here."
    columns: list = field(default_factory=list)


def link(text, url: str) -> dict:
    """A cell that links somewhere (the template renders a dict with `url` as a link)."""
    return {"text": text, "url": url}


def _changelist(name: str, **filters) -> str:
    url = reverse(f"admin:{name}_changelist")
    return f"{url}?{urlencode(filters)}" if filters else url


def _environments(user):
    """Environments the admin may view, in organizations they administer (all, for a platform superuser)."""
    return Environment.objects.restrict(user).administered_by(user)


def dashboard(user) -> list[Section]:
    now = timezone.now()
    environments = list(_environments(user).select_related("organization").order_by("organization__name", "position"))
    ids = [e.pk for e in environments]
    by_id = {e.pk: e for e in environments}
    return [
        _promotions(ids),
        _deployed(ids, environments),
        _failing_runs(ids, now),
        _stuck_deliveries({e.organization_id for e in environments}, now),
        _frozen(ids, by_id, now),
        _production_changes(user, [e for e in environments if e.kind == Kind.PRODUCTION]),
    ]


def _promotions(ids) -> Section:
    open_requests = PromotionRequest.objects.filter(target_id__in=ids, state__in=OPEN_STATES)
    section = Section(
        "promotions",
        "Promotions waiting",
        _changelist("approvals_promotionrequest", state__exact="pending"),
        "All pending requests",
        empty="No promotion is waiting.",
        columns=["Request", "Pipeline", "Into", "State", "Requested"],
    )
    section.count = open_requests.count()
    for request in open_requests.select_related("pipeline", "target", "version").order_by("-created_at")[:ROWS]:
        section.rows.append(
            [
                link(f"#{request.pk}", reverse("admin:approvals_promotionrequest_change", args=[request.pk])),
                f"{request.pipeline.name} v{request.version.number}",
                request.target.name,
                request.get_state_display(),
                request.created_at,
            ]
        )
    return section


def _deployed(ids, environments) -> Section:
    active = Deployment.objects.filter(environment_id__in=ids, is_active=True)
    section = Section(
        "deployed",
        "Deployed versions",
        _changelist("runs_deployment", is_active__exact="1"),
        "All active deployments",
        empty="Nothing is deployed yet.",
    )
    deployments = list(active.select_related("pipeline", "version").order_by("pipeline__name", "pipeline_id"))
    shown_environments = sorted(
        {d.environment_id for d in deployments}, key=lambda pk: [e.pk for e in environments].index(pk)
    )
    names = {e.pk: e.name for e in environments}
    section.columns = ["Pipeline", *[names[pk] for pk in shown_environments]]
    pipelines: dict[int, dict] = {}
    for deployment in deployments:
        row = pipelines.setdefault(deployment.pipeline_id, {"name": deployment.pipeline.name, "cells": {}})
        row["cells"][deployment.environment_id] = link(
            f"v{deployment.version.number}", reverse("admin:runs_deployment_change", args=[deployment.pk])
        )
    section.count = len(pipelines)
    for row in list(pipelines.values())[: ROWS * 2]:
        section.rows.append([row["name"], *[row["cells"].get(pk, "—") for pk in shown_environments]])
    return section


def _failing_runs(ids, now) -> Section:
    failed = Run.objects.filter(environment_id__in=ids, status=RunStatus.FAILED, finished_at__gte=now - WINDOW)
    section = Section(
        "failing-runs",
        "Failing runs (24 h)",
        _changelist("runs_run", status__exact=RunStatus.FAILED),
        "All failed runs",
        empty="No run failed in the last 24 hours.",
        columns=["Run", "Pipeline", "Environment", "Finished", "Error"],
    )
    section.count = failed.count()
    for run in (
        failed.select_related("pipeline", "environment")
        .only("pk", "finished_at", "error", "pipeline__name", "environment__name")
        .order_by("-finished_at")[:ROWS]
    ):
        section.rows.append(
            [
                link(f"#{run.pk}", reverse("admin:runs_run_change", args=[run.pk])),
                run.pipeline.name,
                run.environment.name,
                run.finished_at,
                (run.error or "")[:120],
            ]
        )
    return section


def _stuck_deliveries(organization_ids, now) -> Section:
    recent = Delivery.objects.filter(organization_id__in=organization_ids, created_at__gte=now - WINDOW)
    stuck = recent.filter(
        Q(status=DeliveryStatus.FAILED)
        | Q(status=DeliveryStatus.PENDING, next_attempt_at__lt=now - STUCK_AFTER)
        | Q(status=DeliveryStatus.SENDING, lease_expires_at__lt=now)
    )
    section = Section(
        "stuck-deliveries",
        "Stuck deliveries (24 h)",
        _changelist("notifications_delivery", status__exact=DeliveryStatus.FAILED),
        "All failed deliveries",
        empty="Every delivery of the last 24 hours went out.",
        columns=["Delivery", "Event", "To", "Status", "Attempts", "Last error"],
    )
    section.count = stuck.count()
    for delivery in stuck.select_related("channel", "recipient").order_by("-created_at")[:ROWS]:
        section.rows.append(
            [
                link(str(delivery.delivery_id)[:8], reverse("admin:notifications_delivery_change", args=[delivery.pk])),
                delivery.event,
                delivery.channel.name if delivery.channel else f"email to {delivery.recipient}",
                delivery.get_status_display(),
                delivery.attempts,
                (delivery.last_error or "")[:120],
            ]
        )
    return section


def _frozen(ids, by_id, now) -> Section:
    from apps.environments.models import FreezeWindow

    section = Section(
        "frozen",
        "Frozen now",
        _changelist("environments_environment"),
        "Environments",
        empty="No environment is in a freeze window.",
        columns=["Environment", "Organization", "Reason"],
    )
    # Recurring windows are cron expressions: whether one is in force is decided in Python, over the
    # windows of the visible environments (one query).
    windows = FreezeWindow.objects.filter(environment_id__in=ids).order_by("environment_id", "pk")
    frozen = {}
    for window in windows:
        if window.environment_id not in frozen and window.active_at(now):
            frozen[window.environment_id] = window
    section.count = len(frozen)
    for environment_id, window in list(frozen.items())[:ROWS]:
        environment = by_id[environment_id]
        section.rows.append(
            [
                link(environment.name, reverse("admin:environments_environment_change", args=[environment_id])),
                environment.organization.name,
                window.reason,
            ]
        )
    return section


def _production_changes(user, production) -> Section:
    section = Section(
        "production-changes",
        "Recent configuration changes in production",
        reverse("web:audit"),
        "Audit feed",
        empty="No configuration change in production yet.",
        columns=["When", "Who", "What", "Environment", "Change"],
    )
    if not production:
        return section
    filters = {"models": CONFIGURATION_MODELS, "environments": [e.pk for e in production]}
    rows = list(audit_rows(user, filters)[:ROWS])
    section.count = len(rows)
    for entry in audit_entries(rows):
        changes = ", ".join(f"{c['field']}: {c['before'] or '∅'} → {c['after']}" for c in entry["changes"][:3])
        section.rows.append(
            [
                entry["when"],
                entry["who"],
                f"{entry['what']} {entry['name']}".strip(),
                entry["environment"].name if entry["environment"] else "",
                changes or entry["action"],
            ]
        )
    return section
