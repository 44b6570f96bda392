"""/metrics: the Prometheus exposition, refused without the token or outside the allowed networks;
names, labels and values after a run and a promotion."""

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from apps.core.models import WorkerHeartbeat
from apps.resolution import cache_stats
from tests.approvals.service_helpers import approve, execute, request, run_ok

pytestmark = pytest.mark.django_db

TOKEN = "metrics-token-for-tests-123"


@pytest.fixture
def scrape(client, settings):
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_ALLOWED_NETWORKS = []

    def get():
        response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
        assert response.status_code == 200, response.content
        assert response["Content-Type"].startswith("text/plain")
        samples = {}
        for family in text_string_to_metric_families(response.content.decode()):
            for sample in family.samples:
                samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return samples

    return get


def test_refused_without_the_token_or_from_elsewhere(client, settings):
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_ALLOWED_NETWORKS = []
    assert client.get("/metrics").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200
    assert client.post("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 405
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    assert client.get("/metrics").status_code == 403  # the test client comes from 127.0.0.1
    settings.METRICS_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    assert client.get("/metrics").status_code == 200
    assert "/metrics" not in client.get("/api/v1/schema/").content.decode()  # off the public API


def _labels(**labels):
    return tuple(sorted(labels.items()))


def test_figures_after_a_run_and_a_promotion(promo, scrape):
    WorkerHeartbeat.objects.create(name="worker@test", seen_at=timezone.now())
    run_ok(promo, "development")
    promotion = approve(request(promo), promo["staging_approver"])
    execute(promotion)
    samples = scrape()

    dev = {"organization": "acme", "environment": "development"}
    assert samples[("planasonix_runs", _labels(**dev, status="succeeded"))] == 1
    assert samples[("planasonix_run_duration_seconds_count", _labels(**dev))] == 1
    assert samples[("planasonix_run_duration_seconds_bucket", _labels(**dev, le="+Inf"))] == 1
    assert samples[("planasonix_run_duration_seconds_sum", _labels(**dev))] >= 0

    staging = {"organization": "acme", "environment": "staging"}
    assert samples[("planasonix_promotions", _labels(**staging, state="deployed"))] == 1
    assert samples[("planasonix_approval_wait_seconds_count", _labels(**staging))] == 1

    for status in ("pending", "sending", "succeeded", "failed"):
        assert ("planasonix_deliveries", _labels(status=status)) in samples
    for queue in ("runs", "promotions"):
        assert samples[("planasonix_queue_lag_seconds", _labels(queue=queue))] == 0
    # The approvers' emails are pending deliveries (no worker sends them here).
    assert samples[("planasonix_queue_lag_seconds", _labels(queue="deliveries"))] >= 0
    assert 0 <= samples[("planasonix_worker_heartbeat_age_seconds", ())] < 60
    hits = samples[("planasonix_resolution_cache_requests_total", _labels(result="hit"))]
    misses = samples[("planasonix_resolution_cache_requests_total", _labels(result="miss"))]
    assert misses >= 1
    assert samples[("planasonix_resolution_cache_hit_ratio", ())] == pytest.approx(hits / (hits + misses))


def test_queue_lag_reports_the_oldest_waiting_run(promo, scrape):
    from datetime import timedelta

    from apps.runs import services as run_services
    from apps.runs.models import Run

    run = run_services.run_create(
        actor=promo["org_admin"], pipeline=promo["pipeline"], environment=promo["development"]
    )
    Run.objects.filter(pk=run.pk).update(created_at=timezone.now() - timedelta(minutes=10))
    lag = scrape()[("planasonix_queue_lag_seconds", _labels(queue="runs"))]
    assert 590 <= lag <= 700


def test_cache_stats_count_hits_and_misses():
    before = cache_stats.counts()
    cache_stats.record("miss")
    cache_stats.record("hit")
    cache_stats.record("hit")
    after = cache_stats.counts()
    assert after["hit"] - before["hit"] == 2 and after["miss"] - before["miss"] == 1


def test_a_counted_read_counts_its_hit_or_miss_in_the_same_call(monkeypatch):
    """cache_stats.get: a found value counts a hit, a missing one a miss (or nothing with
    count_miss=False); with the Redis cache the read and its count are one script, one round trip."""
    from django.core.cache import cache, caches

    from apps.core.cache import ReusedClientRedisCache

    cache.set("counted-read:there", {"answer": 42})
    cache.delete("counted-read:missing")
    before = cache_stats.counts()
    assert cache_stats.get("counted-read:there") == {"answer": 42}
    assert cache_stats.get("counted-read:missing") is None
    assert cache_stats.get("counted-read:missing", count_miss=False) is None
    after = cache_stats.counts()
    assert (after["hit"] - before["hit"], after["miss"] - before["miss"]) == (1, 1)
    backend = caches["default"]
    if isinstance(backend, ReusedClientRedisCache):  # CI's cache: no separate get or incr
        calls = []
        monkeypatch.setattr(type(backend), "get", lambda *a, **k: calls.append("get"))
        monkeypatch.setattr(type(backend), "incr", lambda *a, **k: calls.append("incr"))
        assert cache_stats.get("counted-read:there") == {"answer": 42}
        assert calls == []


def test_scrape_costs_a_fixed_number_of_queries(promo, scrape, django_assert_max_num_queries):
    run_ok(promo, "development")
    with django_assert_max_num_queries(12) as few:
        scrape()
    for _ in range(3):
        run_ok(promo, "development")
    with django_assert_max_num_queries(len(few.captured_queries)):
        scrape()
