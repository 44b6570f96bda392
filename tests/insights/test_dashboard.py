"""The admin index's dashboard: each section's figures and links, only the admin's organizations,
and a query count that does not grow from 10 to 1,000 rows."""

import datetime

import pytest
from django.utils import timezone

from apps.environments import services as env_services
from apps.notifications.models import Channel, ChannelKind, Delivery, DeliveryStatus
from apps.runs.models import Run, RunStatus
from apps.tenancy import services as tenancy_services
from apps.tenancy.models import Edition
from apps.variables import services as variable_services
from tests.approvals.service_helpers import approve, execute, request, run_ok

pytestmark = pytest.mark.django_db


def _dashboard(client):
    response = client.get("/admin/")
    assert response.status_code == 200
    return response, {section.key: section for section in response.context["dashboard"]}


def _fill(promo, runs: int):
    """A failing run, a stuck delivery, a pending promotion, a freeze and a production change each, `runs` times."""
    now = timezone.now()
    Run.objects.bulk_create(
        Run(
            pipeline=promo["pipeline"],
            version=promo["version"],
            environment=promo["development"],
            status=RunStatus.FAILED,
            error="boom",
            started_at=now - datetime.timedelta(minutes=2),
            finished_at=now - datetime.timedelta(minutes=1),
        )
        for _ in range(runs)
    )
    channel = Channel.objects.filter(organization=promo["pipeline"].project.organization).first()
    if channel is None:
        channel = Channel.objects.create(
            organization=promo["pipeline"].project.organization, name="hook", kind=ChannelKind.EMAIL, target="a@b.c"
        )
    Delivery.objects.bulk_create(
        Delivery(
            channel=channel,
            organization=channel.organization,
            event="run.failed",
            payload={},
            status=DeliveryStatus.FAILED,
            next_attempt_at=now,
        )
        for _ in range(runs)
    )


def test_sections_show_the_state_of_the_world(promo, client):
    org_admin = promo["org_admin"]
    run_ok(promo, "development")
    staged = execute(approve(request(promo), promo["staging_approver"]))
    assert staged.state == "deployed"
    env_services.freeze_window_create(
        actor=org_admin,
        environment=promo["production"],
        kind="one_off",
        starts_at=timezone.now() - datetime.timedelta(hours=1),
        ends_at=timezone.now() + datetime.timedelta(hours=1),
        reason="quarter close",
    )
    variable = variable_services.variable_create(
        actor=org_admin, organization=promo["pipeline"].project.organization, name="batch_size", type="integer"
    )
    variable_services.variable_override_set(
        actor=org_admin, variable=variable, environment=promo["production"], value=500
    )
    _fill(promo, 3)
    client.force_login(org_admin)
    response, sections = _dashboard(client)

    assert sections["deployed"].count == 1
    assert sections["deployed"].columns == ["Pipeline", "Development", "Staging"]
    assert sections["failing-runs"].count == 3
    assert sections["stuck-deliveries"].count == 3
    assert sections["frozen"].count == 1 and sections["frozen"].rows[0][2] == "quarter close"
    changes = sections["production-changes"]
    assert "batch_size" in changes.rows[0][2] and "500" in changes.rows[0][4]  # newest first
    assert {row[2].split()[0] for row in changes.rows} <= {"variable", "connection", "runtime"}
    assert all(row[3] == "Production" for row in changes.rows)
    html = response.content.decode()
    assert "/admin/runs/run/?status__exact=failed" in html
    assert "/admin/notifications/delivery/?status__exact=failed" in html
    assert "/admin/approvals/promotionrequest/?state__exact=pending" in html
    assert "quarter close" in html


def test_pending_promotions_are_listed(promo, client):
    run_ok(promo, "development")
    pending = request(promo)
    client.force_login(promo["org_admin"])
    _, sections = _dashboard(client)
    assert sections["promotions"].count == 1
    assert sections["promotions"].rows[0][0]["text"] == f"#{pending.pk}"


def test_only_the_admins_organizations(promo, client, platform_staff, outsider):
    _fill(promo, 2)
    other = tenancy_services.organization_create(
        actor=platform_staff, name="Other", slug="other", edition=Edition.ENTERPRISE, owner=outsider
    )
    outsider.is_staff = True
    outsider.save()
    client.force_login(outsider)
    _, sections = _dashboard(client)
    assert all(section.count == 0 for section in sections.values()), {k: s.count for k, s in sections.items()}
    assert other.pk


def test_query_count_is_flat_from_10_to_1000_rows(promo, client, django_assert_max_num_queries):
    client.force_login(promo["org_admin"])
    _fill(promo, 10)
    client.get("/admin/")
    with django_assert_max_num_queries(60) as few:
        client.get("/admin/")
    _fill(promo, 990)
    with django_assert_max_num_queries(len(few.captured_queries)):
        _, sections = _dashboard(client)
    assert sections["failing-runs"].count == 1000
    assert len(sections["failing-runs"].rows) == 10
