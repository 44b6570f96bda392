"""Delivery (DORA) metrics on a constructed deployment history with known answers; the API and page."""

import datetime

import pytest
from django.utils import timezone

from apps.insights.delivery import delivery_insights
from apps.pipelines.models import PipelineVersion
from apps.runs.models import Deployment, Run, RunStatus
from tests.approvals.service_helpers import new_version

pytestmark = pytest.mark.django_db

HOUR = 3600
T0 = timezone.make_aware(datetime.datetime(2026, 11, 2, 9, 0))  # a Monday


def _at(obj, **fields):
    type(obj).objects.filter(pk=obj.pk).update(**fields)
    obj.refresh_from_db()
    return obj


def _deploy(pipeline, environment, version, when, previous=None):
    if previous is not None:
        _at(previous, is_active=False, deactivated_at=when)
    deployment = Deployment.objects.create(
        pipeline=pipeline, environment=environment, version=version, previous=previous, is_active=True
    )
    return _at(deployment, created_at=when)


def _run(deployment, status, finished):
    run = Run.objects.create(
        pipeline=deployment.pipeline,
        version=deployment.version,
        environment=deployment.environment,
        deployment=deployment,
        status=status,
        started_at=finished - datetime.timedelta(minutes=5),
        finished_at=finished,
    )
    return _at(run, created_at=finished - datetime.timedelta(minutes=5))


@pytest.fixture
def history(promo):
    """Production: v1 (lead 2 h), v2 (lead 4 h, its first run fails, rolled back to v1 an hour
    later: lead 30 h), then v3 (lead 3 h). 4 deployments, 1 failed, restored in 1 h."""
    pipeline, production = promo["pipeline"], promo["production"]
    type(production.policy).objects.filter(pk=production.policy.pk).update(watch_first_runs=1)
    v1 = _at(promo["version"], created_at=T0)
    v2 = _at(new_version(promo, "v2"), created_at=T0 + datetime.timedelta(days=1))
    v3 = _at(new_version(promo, "v3"), created_at=T0 + datetime.timedelta(days=2))
    d1 = _deploy(pipeline, production, v1, T0 + datetime.timedelta(hours=2))
    _run(d1, RunStatus.SUCCEEDED, T0 + datetime.timedelta(hours=3))
    d2 = _deploy(pipeline, production, v2, v2.created_at + datetime.timedelta(hours=4), previous=d1)
    _run(d2, RunStatus.FAILED, v2.created_at + datetime.timedelta(hours=5))
    d3 = _deploy(pipeline, production, v1, v2.created_at + datetime.timedelta(hours=6), previous=d2)
    d4 = _deploy(pipeline, production, v3, v3.created_at + datetime.timedelta(hours=3), previous=d3)
    _run(d4, RunStatus.SUCCEEDED, v3.created_at + datetime.timedelta(hours=4))
    # A failed run after the watched first one does not make the deployment a failure.
    _run(d4, RunStatus.FAILED, v3.created_at + datetime.timedelta(hours=5))
    assert PipelineVersion.objects.filter(pipeline=pipeline).count() == 3
    return promo


def test_known_answers(history):
    now = T0 + datetime.timedelta(days=3)
    (production,) = [
        p for p in delivery_insights(history["org_admin"], days=28, now=now) if p.environment == "production"
    ]
    assert production.deployments == 4
    assert production.deployments_per_week == 1.0
    assert production.failures == 1
    assert production.change_failure_rate == 0.25
    assert production.lead_time_seconds == 3.5 * HOUR  # median of 2 h, 4 h, 30 h, 3 h
    assert production.time_to_restore_seconds == 1 * HOUR  # first failure → the rollback
    (week,) = [w for w in production.weekly if w["deployments"]]
    assert week["week"] == T0.date() and week["deployments"] == 4 and week["failures"] == 1
    assert sum(w["deployments"] for w in production.weekly) == 4


def test_the_window_leaves_older_deployments_out(history):
    now = T0 + datetime.timedelta(days=3)
    pairs = delivery_insights(history["org_admin"], days=7, now=now + datetime.timedelta(days=5, hours=12))
    (production,) = [p for p in pairs if p.environment == "production"]
    assert production.deployments == 1  # only v3's (2 days 3 hours after T0) is in the last 7 days
    assert production.failures == 0 and production.time_to_restore_seconds is None


def test_only_visible_environments(history, outsider):
    from apps.environments import permissions as perms
    from apps.environments import services as env_services

    developer = history["developer"]
    env_services.permission_revoke(
        actor=history["org_admin"], environment=history["production"], codename=perms.VIEW, user=developer
    )
    perms.forget(developer)
    now = T0 + datetime.timedelta(days=3)
    assert not [p for p in delivery_insights(developer, days=28, now=now) if p.environment == "production"]
    assert delivery_insights(outsider, days=28, now=now) == []


def test_api(history, api, monkeypatch):
    from apps.insights import api as insights_api

    now = T0 + datetime.timedelta(days=3)
    monkeypatch.setattr(insights_api, "delivery_insights", lambda user, **kw: delivery_insights(user, now=now, **kw))
    client = api(history["org_admin"])
    response = client.get("/api/v1/insights/", {"pipeline": history["pipeline"].pk, "environment": "production"})
    assert response.status_code == 200, response.content
    (row,) = response.json()
    assert row["deployments"] == 4 and row["change_failure_rate"] == 0.25
    assert row["lead_time_seconds"] == 12600 and row["time_to_restore_seconds"] == 3600
    assert {"week": "2026-11-02", "deployments": 4, "failures": 1} in row["weekly"]


@pytest.mark.parametrize(
    "params, field",
    [
        ({"days": "3"}, "days"),
        ({"days": "10**30"}, "days"),
        ({"pipeline": "999999"}, "pipeline"),
        ({"environment": "nowhere"}, "environment"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_api_bad_parameters(history, api, params, field):
    response = api(history["org_admin"]).get("/api/v1/insights/", params)
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]


def test_page_draws_a_chart_per_pipeline(history, client):
    client.force_login(history["org_admin"])
    response = client.get("/insights/", {"days": 365})
    assert response.status_code == 200
    html = response.content.decode()
    assert "<svg" in html and "Orders" in html and "production" in html
    assert "Change failure rate" in html
    assert client.get("/insights/", {"days": "x"}).status_code == 400


def test_queries_do_not_grow_with_deployments(history, django_assert_max_num_queries):
    now = T0 + datetime.timedelta(days=3)
    with django_assert_max_num_queries(12) as few:
        delivery_insights(history["org_admin"], days=28, now=now)
    previous = Deployment.objects.filter(pipeline=history["pipeline"], environment=history["staging"]).first()
    for hours in range(10):
        previous = _deploy(
            history["pipeline"], history["staging"], history["version"], T0 + datetime.timedelta(hours=hours), previous
        )
        _run(previous, RunStatus.SUCCEEDED, T0 + datetime.timedelta(hours=hours, minutes=30))
    with django_assert_max_num_queries(len(few.captured_queries)):
        delivery_insights(history["org_admin"], days=28, now=now)
