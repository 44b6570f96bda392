"""Delivery insights per pipeline and environment: the four DORA metrics, computed from deployments.

- **Deployment frequency**: deployments into the environment in the window (and per week).
- **Lead time for changes**: from a version's creation to its deployment (median).
- **Change failure rate**: the share of deployments that failed — rolled back (the next deployment
  went back to an older version: promotions never deploy an older version, so only a rollback
  does) or one of whose first watched runs failed (the environment's `watch_first_runs`, at least 1).
- **Time to restore**: from a failed deployment's first failure (its first failed run, else its
  start) to the next deployment into the environment (median).

Visible pipelines and environments only (the pipelines selector and the permission door); a fixed
number of queries whatever the number of deployments."""

import datetime
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.utils import timezone

from apps.environments.models import Environment
from apps.pipelines.models import Pipeline
from apps.runs.models import Deployment, Run, RunStatus

DEFAULT_DAYS = 30
MAX_DAYS = 365


@dataclass
class PairInsights:
    pipeline_id: int
    pipeline: str
    environment_id: int
    environment: str
    days: int
    deployments: int = 0
    failures: int = 0
    lead_times: list[float] = field(default_factory=list)
    restore_times: list[float] = field(default_factory=list)
    weekly: list[dict] = field(default_factory=list)  # [{"week": date, "deployments": n, "failures": n}]

    @property
    def deployments_per_week(self) -> float:
        return round(self.deployments / (self.days / 7), 2)

    @property
    def change_failure_rate(self) -> float | None:
        return round(self.failures / self.deployments, 4) if self.deployments else None

    @property
    def lead_time_seconds(self) -> float | None:
        return round(statistics.median(self.lead_times), 1) if self.lead_times else None

    @property
    def time_to_restore_seconds(self) -> float | None:
        return round(statistics.median(self.restore_times), 1) if self.restore_times else None

    def as_dict(self) -> dict:
        return {
            "pipeline": self.pipeline_id,
            "pipeline_name": self.pipeline,
            "environment": self.environment,
            "days": self.days,
            "deployments": self.deployments,
            "deployments_per_week": self.deployments_per_week,
            "lead_time_seconds": self.lead_time_seconds,
            "change_failure_rate": self.change_failure_rate,
            "failed_deployments": self.failures,
            "time_to_restore_seconds": self.time_to_restore_seconds,
            "weekly": self.weekly,
        }


def _week_start(moment: datetime.datetime) -> datetime.date:
    day = timezone.localtime(moment).date()
    return day - datetime.timedelta(days=day.weekday())


def delivery_insights(
    user, *, pipeline=None, environment=None, days: int = DEFAULT_DAYS, now=None
) -> list[PairInsights]:
    """Insights for every (visible pipeline, visible environment) pair with deployments in the window."""
    now = now or timezone.now()
    since = now - datetime.timedelta(days=days)
    pipelines = Pipeline.objects.restrict(user)
    if pipeline is not None:
        pipelines = pipelines.filter(pk=pipeline.pk)
    environments = Environment.objects.restrict(user)
    if environment is not None:
        environments = environments.filter(pk=environment.pk)
    # Deployments in the window, plus each one's successor (which may fall after the window).
    deployments = list(
        Deployment.objects.filter(
            pipeline__in=pipelines.values("pk"), environment__in=environments.values("pk"), created_at__gte=since
        )
        .select_related("version", "pipeline", "environment__policy")
        .order_by("pipeline_id", "environment_id", "created_at", "pk")
    )
    ids = [d.pk for d in deployments]
    successors = {
        row["previous_id"]: row
        for row in Deployment.objects.filter(previous_id__in=ids).values("previous_id", "created_at", "version__number")
    }
    finished: dict[int, list[Mapping[str, Any]]] = {}  # deployment id -> its finished runs, oldest first
    for row in (
        Run.objects.filter(deployment_id__in=ids, status__in=(RunStatus.SUCCEEDED, RunStatus.FAILED))
        .values("deployment_id", "status", "finished_at")
        .order_by("deployment_id", "created_at", "pk")
    ):
        finished.setdefault(row["deployment_id"], []).append(row)

    pairs: dict[tuple[int, int], PairInsights] = {}
    weeks = [_week_start(since + datetime.timedelta(days=7 * i)) for i in range(days // 7 + 1)]
    for deployment in deployments:
        key = (deployment.pipeline_id, deployment.environment_id)
        pair = pairs.get(key)
        if pair is None:
            pair = pairs[key] = PairInsights(
                deployment.pipeline_id, deployment.pipeline.name, deployment.environment_id,
                deployment.environment.slug, days,
                weekly=[{"week": week, "deployments": 0, "failures": 0} for week in weeks],
            )  # fmt: skip
        pair.deployments += 1
        pair.lead_times.append((deployment.created_at - deployment.version.created_at).total_seconds())
        policy = getattr(deployment.environment, "policy", None)
        watched = finished.get(deployment.pk, [])[: max(getattr(policy, "watch_first_runs", 0) or 0, 1)]
        first_failure = next((run["finished_at"] for run in watched if run["status"] == RunStatus.FAILED), None)
        successor = successors.get(deployment.pk)
        rolled_back = successor is not None and successor["version__number"] < deployment.version.number
        week = _week_start(deployment.created_at)
        bucket = next((b for b in pair.weekly if b["week"] == week), None)
        if bucket is not None:
            bucket["deployments"] += 1
        if first_failure is None and not rolled_back:
            continue
        pair.failures += 1
        if bucket is not None:
            bucket["failures"] += 1
        if successor is not None:
            started = first_failure or deployment.created_at
            pair.restore_times.append(max(0.0, (successor["created_at"] - started).total_seconds()))
    return sorted(pairs.values(), key=lambda p: (p.pipeline.lower(), p.environment))
