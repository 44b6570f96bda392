"""Prometheus metrics at `/metrics`, read from the database at scrape time.

Every figure comes from the rows that are the source of truth (runs, promotions, deliveries, the
worker heartbeat), so any number of web processes answer the same and nothing is lost on restart;
each scrape costs a fixed number of aggregate queries. The resolution cache's hits and misses are
counted in the shared cache (apps.resolution.cache_stats). The endpoint sits outside the API router
and answers only a caller with METRICS_TOKEN (Bearer) or from METRICS_ALLOWED_NETWORKS."""

import datetime
import hmac
import ipaddress

from django.conf import settings
from django.db.models import Count, DurationField, ExpressionWrapper, F, Min, Q, Sum
from django.http import HttpResponse
from django.utils import timezone
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from apps.approvals.models import PromotionRequest, PromotionState
from apps.core.models import WorkerHeartbeat
from apps.environments.models import Environment
from apps.notifications.models import Delivery, DeliveryStatus
from apps.resolution import cache_stats
from apps.runs.models import Run, RunStatus

DURATION_BUCKETS = (1, 5, 15, 30, 60, 300, 900, 1800, 3600, 4 * 3600)
WAIT_BUCKETS = (60, 300, 900, 3600, 4 * 3600, 24 * 3600, 3 * 24 * 3600, 7 * 24 * 3600)


def _seconds(start: str, end: str):
    return ExpressionWrapper(F(end) - F(start), output_field=DurationField())


def _histogram(queryset, group: str, start: str, end: str, buckets) -> dict:
    """{group value: (cumulative bucket counts, count, sum of seconds)} in one aggregate query."""
    measured = queryset.filter(**{f"{start}__isnull": False, f"{end}__isnull": False}).annotate(
        _duration=_seconds(start, end)
    )
    aggregates = {
        f"le_{i}": Count("pk", filter=Q(_duration__lte=datetime.timedelta(seconds=bound)))
        for i, bound in enumerate(buckets)
    }
    rows = measured.values(group).annotate(_count=Count("pk"), _sum=Sum("_duration"), **aggregates).order_by()
    return {
        row[group]: (
            [row[f"le_{i}"] for i in range(len(buckets))],
            row["_count"],
            row["_sum"].total_seconds() if row["_sum"] is not None else 0.0,
        )
        for row in rows
    }


def _counts(name: str, documentation: str, queryset, group: str, by: str, labels) -> GaugeMetricFamily:
    """A gauge of `queryset`'s rows per environment (`group`, labelled by `labels`) and `by`, in one query."""
    family = GaugeMetricFamily(name, documentation, labels=["organization", "environment", by])
    for row in queryset.values(group, by).annotate(n=Count("pk")).order_by():
        family.add_metric([*labels(row[group]), row[by]], row["n"])
    return family


def _histogram_family(
    name: str, documentation: str, queryset, measure: tuple[str, str, str], buckets, labels
) -> HistogramMetricFamily:
    """A histogram per environment of the seconds between two columns: `measure` is (group, start, end)
    as for _histogram, the environment labelled by `labels`."""
    family = HistogramMetricFamily(name, documentation, labels=["organization", "environment"])
    for environment_id, (cumulative, count, total) in _histogram(queryset, *measure, buckets).items():
        counts = [(str(b), c) for b, c in zip(buckets, cumulative, strict=True)] + [("+Inf", count)]
        family.add_metric(labels(environment_id), counts, total)
    return family


class PlatformCollector:
    """The collector registered on the scrape's registry."""

    def collect(self):
        now = timezone.now()
        environments = {
            e.pk: (e.organization.slug, e.slug)
            for e in Environment.objects.select_related("organization").only("slug", "organization__slug")
        }

        def labels(environment_id):
            return list(environments.get(environment_id, ("?", "?")))

        yield _counts(
            "planasonix_runs", "Runs by status and environment.", Run.objects, "environment_id", "status", labels
        )
        yield _histogram_family(
            "planasonix_run_duration_seconds",
            "Duration of finished runs (started → finished).",
            Run.objects.filter(status__in=(RunStatus.SUCCEEDED, RunStatus.FAILED)),
            ("environment_id", "started_at", "finished_at"),
            DURATION_BUCKETS,
            labels,
        )
        yield _counts(
            "planasonix_promotions",
            "Promotion requests by state and target environment.",
            PromotionRequest.objects,
            "target_id",
            "state",
            labels,
        )
        yield _histogram_family(
            "planasonix_approval_wait_seconds",
            "Time from request to decision (approved or rejected) of promotion requests.",
            PromotionRequest.objects.filter(decided_at__isnull=False),
            ("target_id", "created_at", "decided_at"),
            WAIT_BUCKETS,
            labels,
        )

        deliveries = GaugeMetricFamily("planasonix_deliveries", "Notification deliveries by status.", labels=["status"])
        counted = dict(Delivery.objects.values_list("status").annotate(n=Count("pk")).order_by())
        for status in DeliveryStatus.values:
            deliveries.add_metric([status], counted.get(status, 0))
        yield deliveries

        lag = GaugeMetricFamily(
            "planasonix_queue_lag_seconds",
            "Age of the oldest outbox row waiting for a worker (0 when none waits).",
            labels=["queue"],
        )
        oldest = {
            "runs": Run.objects.filter(status=RunStatus.QUEUED).aggregate(t=Min("created_at"))["t"],
            "promotions": PromotionRequest.objects.filter(state=PromotionState.APPROVED)
            .filter(Q(deploy_after__isnull=True) | Q(deploy_after__lte=now))
            .aggregate(t=Min("approved_at"))["t"],
            "deliveries": Delivery.objects.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now).aggregate(
                t=Min("next_attempt_at")
            )["t"],
        }
        for queue, since in oldest.items():
            lag.add_metric([queue], max(0.0, (now - since).total_seconds()) if since else 0.0)
        yield lag

        latest = WorkerHeartbeat.objects.order_by("-seen_at").values_list("seen_at", flat=True).first()
        age = GaugeMetricFamily(
            "planasonix_worker_heartbeat_age_seconds",
            "Seconds since a worker last ran the heartbeat task (NaN before the first).",
        )
        age.add_metric([], (now - latest).total_seconds() if latest else float("nan"))
        yield age

        stats = cache_stats.counts()
        requests = CounterMetricFamily(
            "planasonix_resolution_cache_requests", "Cacheable resolutions by cache result.", labels=["result"]
        )
        for result, value in stats.items():
            requests.add_metric([result], value)
        yield requests
        total = stats["hit"] + stats["miss"]
        ratio = GaugeMetricFamily("planasonix_resolution_cache_hit_ratio", "Hits / (hits + misses) of the cache.")
        ratio.add_metric([], stats["hit"] / total if total else 0.0)
        yield ratio


def _allowed(request) -> bool:
    token = settings.METRICS_TOKEN
    if token:
        given = request.headers.get("Authorization", "")
        if given.startswith("Bearer ") and hmac.compare_digest(given[7:].strip().encode(), token.encode()):
            return True
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(network) for network in settings.METRICS_ALLOWED_NETWORKS)


def metrics_view(request):
    """The Prometheus text exposition; 403 without the token or from outside the allowed networks."""
    if request.method != "GET":
        return HttpResponse(status=405, headers={"Allow": "GET"})
    if not _allowed(request):
        return HttpResponse("Forbidden: give METRICS_TOKEN as a Bearer token.\n", status=403, content_type="text/plain")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PlatformCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
