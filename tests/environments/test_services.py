"""Environment services: limits, naming, editions, defaults, promotion path, policy lock, freeze
windows, history and notifications."""

from datetime import UTC, datetime, timedelta

import pytest

from apps.core.errors import Conflict, PermissionDenied, ValidationFailed
from apps.environments import permissions as perms
from apps.environments import services
from apps.environments.models import (
    Environment,
    EnvironmentUserObjectPermission,
    FreezeKind,
    FreezeWindow,
    Kind,
    RuntimePolicy,
)
from apps.notifications.models import Delivery
from apps.notifications.services import channel_create
from apps.tenancy import services as tenancy_services
from apps.tenancy.models import Edition

from .conftest import fresh

pytestmark = pytest.mark.django_db


def _fill_to_limit(org, org_admin):
    for name in ("Qa", "Uat"):
        services.environment_create(actor=org_admin, organization=org, name=name, kind=Kind.CUSTOM)
    assert Environment.objects.filter(organization=org).count() == org.max_environments


# --- limit, naming, edition -------------------------------------------------------------------


def test_limit_refuses_the_environment_past_max(org, org_admin, stages):
    _fill_to_limit(org, org_admin)
    with pytest.raises(ValidationFailed) as excinfo:
        services.environment_create(actor=org_admin, organization=org, name="Sixth")
    assert excinfo.value.code == "limit_reached"
    assert "name" in excinfo.value.fields
    assert not Environment.objects.filter(name="Sixth").exists()


def test_name_must_match_the_organization_pattern(platform_staff, org_admin):
    org = tenancy_services.organization_create(
        actor=platform_staff,
        name="Strict",
        slug="strict",
        environment_name_pattern=r"(dev|stg|prd)-[a-z]+",
        owner=org_admin,
    )
    services.environment_create(actor=org_admin, organization=org, name="prd-eu")
    for bad in ("Production", "prd-EU", "prd-eu ", "xprd-eu"):
        with pytest.raises(ValidationFailed) as excinfo:
            services.environment_create(actor=org_admin, organization=org, name=bad)
        assert excinfo.value.fields["name"], bad
    assert list(Environment.objects.filter(organization=org).values_list("name", flat=True)) == ["prd-eu"]


def test_rename_checks_the_pattern(org_admin, stages):
    with pytest.raises(ValidationFailed) as excinfo:
        services.environment_update(actor=org_admin, environment=stages["staging"], name="9 lives")
    assert "name" in excinfo.value.fields
    assert Environment.objects.get(pk=stages["staging"].pk).name == "Staging"


def test_duplicate_slug_is_a_conflict(org, org_admin, stages):
    with pytest.raises(Conflict):
        services.environment_create(actor=org_admin, organization=org, name="staging")
    with pytest.raises(Conflict):
        services.environment_update(actor=org_admin, environment=stages["staging"], slug="production")


def test_standard_edition_has_one_implicit_environment(standard_org):
    environments = list(Environment.objects.filter(organization=standard_org))
    assert [e.slug for e in environments] == ["default"]
    assert RuntimePolicy.objects.filter(environment=environments[0]).exists()


def test_standard_edition_refuses_create_rename_and_promotion_path(standard_org, standard_owner):
    implicit = Environment.objects.get(organization=standard_org)
    with pytest.raises(PermissionDenied) as excinfo:
        services.environment_create(actor=standard_owner, organization=standard_org, name="Staging")
    assert excinfo.value.code == "edition_required"
    assert "enterprise edition" in excinfo.value.message and "standard" in excinfo.value.message
    with pytest.raises(PermissionDenied) as excinfo:
        services.environment_update(actor=standard_owner, environment=implicit, name="Prod")
    assert excinfo.value.code == "edition_required"
    with pytest.raises(PermissionDenied):
        services.environment_update(actor=standard_owner, environment=implicit, slug="prod")
    with pytest.raises(PermissionDenied):
        services.environment_delete(actor=standard_owner, environment=implicit)
    assert list(Environment.objects.filter(organization=standard_org).values_list("name", flat=True)) == ["Default"]
    # Non-name fields stay editable.
    services.environment_update(actor=standard_owner, environment=implicit, description="the only one")


def test_upgrade_keeps_the_implicit_environment_as_first_stage(platform_staff, standard_org, standard_owner):
    tenancy_services.organization_update(actor=platform_staff, organization=standard_org, edition=Edition.ENTERPRISE)
    standard_org.refresh_from_db()
    staging = services.environment_create(actor=standard_owner, organization=standard_org, name="Staging")
    first = Environment.objects.filter(organization=standard_org).order_by("position").first()
    assert first.slug == "default" and staging.position > first.position


def test_only_org_admins_create(org, members, stages):
    with pytest.raises(PermissionDenied):
        services.environment_create(actor=members["developer"], organization=org, name="Mine")


def test_production_defaults(stages):
    production = stages["production"]
    assert production.is_protected
    assert production.policy.locked and production.policy.forbid_plaintext_secrets
    assert not production.policy.allow_runtime_overrides
    assert stages["development"].policy.sample_rows == 10_000


def test_explicit_sampling_replaces_the_kind_default(org, org_admin, stages):
    environment = services.environment_create(
        actor=org_admin, organization=org, name="Sandbox", kind=Kind.DEVELOPMENT, policy={"sample_percent": "5"}
    )
    assert environment.policy.sample_rows is None
    assert RuntimePolicy.objects.get(environment=environment).sample_percent == 5


def test_bad_policy_on_create_writes_nothing(org, org_admin, stages):
    with pytest.raises(ValidationFailed):
        services.environment_create(actor=org_admin, organization=org, name="Sandbox", policy={"warp": 9})
    with pytest.raises(ValidationFailed):
        services.environment_create(actor=org_admin, organization=org, name="Sandbox", policy={"max_rows": 0})
    assert not Environment.objects.filter(name="Sandbox").exists()


# --- permission defaults ----------------------------------------------------------------------


def test_new_member_gets_development_rights_only(org, org_admin, stages, outsider):
    tenancy_services.membership_add(actor=org_admin, organization=org, user=outsider)
    member = fresh(outsider)
    assert set(perms.held_codenames(member, stages["development"])) == set(perms.DEVELOPMENT_DEFAULTS)
    assert perms.held_codenames(member, stages["staging"]) == []
    assert perms.held_codenames(member, stages["production"]) == []


def test_new_development_environment_grants_existing_members(org, org_admin, members, stages):
    sandbox = services.environment_create(actor=org_admin, organization=org, name="Sandbox", kind=Kind.DEVELOPMENT)
    qa = services.environment_create(actor=org_admin, organization=org, name="Qa", kind=Kind.STAGING)
    developer = fresh(members["developer"])
    assert set(perms.held_codenames(developer, sandbox)) == set(perms.DEVELOPMENT_DEFAULTS)
    assert perms.held_codenames(developer, qa) == []
    row = EnvironmentUserObjectPermission.history.filter(user=developer, content_object=sandbox).first()
    assert row.history_user == org_admin


def test_leaving_the_organization_drops_environment_rights(org, org_admin, members, stages):
    from apps.tenancy.models import Membership

    membership = Membership.objects.get(organization=org, user=members["prod_approver"])
    tenancy_services.membership_remove(actor=org_admin, membership=membership)
    assert not EnvironmentUserObjectPermission.objects.filter(user=members["prod_approver"]).exists()


# --- promotion path, kind ---------------------------------------------------------------------


def test_promotion_loops_are_refused(org_admin, stages):
    with pytest.raises(ValidationFailed) as excinfo:
        services.environment_update(
            actor=org_admin, environment=stages["production"], promotes_to=stages["development"]
        )
    assert "loop" in excinfo.value.fields["promotes_to"][0]
    with pytest.raises(ValidationFailed):
        services.environment_update(actor=org_admin, environment=stages["staging"], promotes_to=stages["staging"])
    assert Environment.objects.get(pk=stages["production"].pk).promotes_to is None


def test_cross_organization_targets_are_refused(org, org_admin, stages, other_env):
    with pytest.raises(ValidationFailed) as excinfo:
        services.environment_update(actor=org_admin, environment=stages["staging"], promotes_to=other_env)
    assert "promotes_to" in excinfo.value.fields
    with pytest.raises(ValidationFailed):
        services.environment_create(actor=org_admin, organization=org, name="Qa", promotes_to=other_env)
    assert not Environment.objects.filter(organization=org, name="Qa").exists()


def test_kind_is_immutable(org_admin, stages):
    with pytest.raises(ValidationFailed) as excinfo:
        services.environment_update(actor=org_admin, environment=stages["staging"], kind=Kind.PRODUCTION)
    assert "kind" in excinfo.value.fields
    assert Environment.objects.get(pk=stages["staging"].pk).kind == Kind.STAGING
    services.environment_update(actor=org_admin, environment=stages["staging"], kind=Kind.STAGING, position=15)


def test_update_needs_manage(members, stages):
    with pytest.raises(PermissionDenied):
        services.environment_update(
            actor=fresh(members["developer"]), environment=stages["development"], color="#000000"
        )


def test_delete_refuses_protected_and_unlinks_upstream(org_admin, stages):
    with pytest.raises(Conflict):
        services.environment_delete(actor=org_admin, environment=stages["production"])
    services.environment_delete(actor=org_admin, environment=stages["staging"])
    assert Environment.objects.get(pk=stages["development"].pk).promotes_to is None


# --- runtime policy lock ----------------------------------------------------------------------


def test_locked_policy_needs_manage(org_admin, members, stages):
    production = stages["production"]
    approver = members["prod_approver"]
    services.permission_grant(actor=org_admin, environment=production, codename=perms.CHANGE_CONFIG, user=approver)
    with pytest.raises(PermissionDenied) as excinfo:
        services.runtime_policy_update(actor=fresh(approver), environment=production, max_rows=10)
    assert excinfo.value.code == "environment_locked"
    assert RuntimePolicy.objects.get(environment=production).max_rows is None
    services.permission_grant(actor=org_admin, environment=production, codename=perms.MANAGE, user=approver)
    services.runtime_policy_update(actor=fresh(approver), environment=production, max_rows=10)
    assert RuntimePolicy.objects.get(environment=production).max_rows == 10


def test_changing_the_lock_needs_manage(org_admin, members, stages):
    staging = stages["staging"]
    approver = members["staging_approver"]
    services.permission_grant(actor=org_admin, environment=staging, codename=perms.CHANGE_CONFIG, user=approver)
    services.runtime_policy_update(actor=fresh(approver), environment=staging, max_rows=500)
    with pytest.raises(PermissionDenied):
        services.runtime_policy_update(actor=fresh(approver), environment=staging, locked=True)
    assert not RuntimePolicy.objects.get(environment=staging).locked
    services.runtime_policy_update(actor=org_admin, environment=staging, locked=True)
    with pytest.raises(PermissionDenied):
        services.runtime_policy_update(actor=fresh(approver), environment=staging, locked=False)
    assert RuntimePolicy.objects.get(environment=staging).locked


def test_policy_change_needs_change_config(members, stages):
    with pytest.raises(PermissionDenied):
        services.runtime_policy_update(
            actor=fresh(members["staging_approver"]), environment=stages["staging"], max_rows=1
        )


def test_policy_refuses_both_sampling_modes_and_foreign_channels(org_admin, stages, other_org, other_owner):
    with pytest.raises(ValidationFailed):
        services.runtime_policy_update(actor=org_admin, environment=stages["development"], sample_percent=5)
    foreign, _ = channel_create(
        actor=other_owner, organization=other_org, name="theirs", kind="email", target="x@example.com"
    )
    with pytest.raises(ValidationFailed) as excinfo:
        services.runtime_policy_update(actor=org_admin, environment=stages["staging"], notification_channels=[foreign])
    assert "notification_channels" in excinfo.value.fields
    assert not stages["staging"].policy.notification_channels.exists()


# --- freeze windows ---------------------------------------------------------------------------


def _utc(*args):
    return datetime(*args, tzinfo=UTC)


def test_one_off_window_boundaries(org_admin, stages):
    window = services.freeze_window_create(
        actor=org_admin,
        environment=stages["production"],
        kind=FreezeKind.ONE_OFF,
        starts_at=_utc(2025, 12, 24, 10),
        ends_at=_utc(2025, 12, 24, 12),
        reason="holidays",
    )
    assert window.created_by == org_admin
    assert not window.active_at(_utc(2025, 12, 24, 9, 59, 59))
    assert window.active_at(_utc(2025, 12, 24, 10))
    assert window.active_at(_utc(2025, 12, 24, 11, 59, 59))
    assert not window.active_at(_utc(2025, 12, 24, 12))
    assert services.active_freeze(stages["production"], at=_utc(2025, 12, 24, 11)) == window
    assert services.active_freeze(stages["production"], at=_utc(2025, 12, 25, 11)) is None
    assert services.active_freeze(stages["staging"], at=_utc(2025, 12, 24, 11)) is None


def test_recurring_window_follows_local_time_across_dst(org_admin, stages):
    # 09:00-10:00 New York time on weekdays: 14:00 UTC in winter (EST), 13:00 UTC in summer (EDT).
    window = services.freeze_window_create(
        actor=org_admin,
        environment=stages["production"],
        kind=FreezeKind.RECURRING,
        cron="0 9 * * 1-5",
        duration_minutes=60,
        timezone="America/New_York",
        reason="morning batch",
    )
    friday_before_dst, monday_after_dst = (2025, 3, 7), (2025, 3, 10)
    assert window.active_at(_utc(*friday_before_dst, 14, 0))
    assert window.active_at(_utc(*friday_before_dst, 14, 30))
    assert not window.active_at(_utc(*friday_before_dst, 13, 30))
    assert not window.active_at(_utc(*friday_before_dst, 15, 0))
    assert window.active_at(_utc(*monday_after_dst, 13, 30))
    assert not window.active_at(_utc(*monday_after_dst, 14, 30))
    assert not window.active_at(_utc(2025, 3, 8, 14, 30))  # Saturday


def test_recurring_window_spanning_midnight(org_admin, stages):
    window = services.freeze_window_create(
        actor=org_admin,
        environment=stages["staging"],
        kind=FreezeKind.RECURRING,
        cron="0 23 * * *",
        duration_minutes=120,
        timezone="Europe/Berlin",
        reason="nightly",
    )
    # 23:00-01:00 Berlin (CET, UTC+1) = 22:00-00:00 UTC in January.
    assert window.active_at(_utc(2025, 1, 15, 23, 30))
    assert not window.active_at(_utc(2025, 1, 16, 0, 0))


@pytest.mark.parametrize(
    ("fields", "bad_field"),
    [
        ({"kind": FreezeKind.RECURRING, "cron": "61 * * * *", "duration_minutes": 5}, "cron"),
        ({"kind": FreezeKind.RECURRING, "cron": "0 9 * * * *", "duration_minutes": 5}, "cron"),
        (
            {"kind": FreezeKind.RECURRING, "cron": "0 9 * * *", "duration_minutes": 5, "timezone": "Mars/Olympus"},
            "timezone",
        ),
        ({"kind": FreezeKind.RECURRING, "cron": "0 9 * * *"}, "duration_minutes"),
        ({"kind": FreezeKind.ONE_OFF, "starts_at": _utc(2025, 1, 2), "ends_at": _utc(2025, 1, 1)}, "ends_at"),
        ({"kind": FreezeKind.ONE_OFF, "starts_at": _utc(2025, 1, 2)}, "ends_at"),
        (
            {
                "kind": FreezeKind.ONE_OFF,
                "starts_at": _utc(2025, 1, 1),
                "ends_at": _utc(2025, 1, 2),
                "cron": "0 9 * * *",
            },
            "cron",
        ),
    ],
)
def test_freeze_window_validation(org_admin, stages, fields, bad_field):
    with pytest.raises(ValidationFailed) as excinfo:
        services.freeze_window_create(actor=org_admin, environment=stages["production"], reason="r", **fields)
    assert bad_field in excinfo.value.fields
    assert not FreezeWindow.objects.exists()


def test_freeze_windows_need_manage(members, stages):
    with pytest.raises(PermissionDenied):
        services.freeze_window_create(
            actor=fresh(members["developer"]),
            environment=stages["development"],
            kind=FreezeKind.RECURRING,
            cron="0 9 * * *",
            duration_minutes=5,
            reason="r",
        )


# --- history ----------------------------------------------------------------------------------


def test_environment_changes_are_in_history_with_the_actor(org_admin, stages):
    staging = stages["staging"]
    services.environment_update(actor=org_admin, environment=staging, description="pre-prod", color="#112233")
    latest = staging.history.first()
    assert latest.history_user == org_admin
    assert latest.history_type == "~"
    assert latest.description == "pre-prod"
    assert "color" in latest.history_change_reason and "description" in latest.history_change_reason
    created = staging.history.last()
    assert created.history_type == "+" and created.history_user == org_admin


def test_policy_changes_are_in_history_with_the_actor(org_admin, stages):
    services.runtime_policy_update(actor=org_admin, environment=stages["production"], watch_first_runs=7)
    latest = RuntimePolicy.history.filter(environment_id=stages["production"].pk).first()
    assert latest.history_user == org_admin and latest.watch_first_runs == 7


def test_grants_and_revokes_are_in_history_with_the_actor(org_admin, members, stages):
    developer = members["developer"]
    production = stages["production"]
    services.permission_grant(actor=org_admin, environment=production, codename=perms.VIEW, user=developer)
    services.permission_revoke(actor=org_admin, environment=production, codename=perms.VIEW, user=developer)
    rows = list(
        EnvironmentUserObjectPermission.history.filter(user=developer, content_object=production).order_by(
            "history_date", "history_id"
        )
    )
    assert [(r.history_type, r.history_user, r.permission.codename) for r in rows] == [
        ("+", org_admin, perms.VIEW),
        ("-", org_admin, perms.VIEW),
    ]


def test_grant_rules(org_admin, members, stages, outsider):
    developer = fresh(members["developer"])
    with pytest.raises(PermissionDenied):  # the developer does not manage development
        services.permission_grant(
            actor=developer, environment=stages["development"], codename=perms.VIEW, user=outsider
        )
    with pytest.raises(ValidationFailed) as excinfo:  # not a member
        services.permission_grant(actor=org_admin, environment=stages["staging"], codename=perms.VIEW, user=outsider)
    assert "user" in excinfo.value.fields
    with pytest.raises(ValidationFailed):
        services.permission_grant(actor=org_admin, environment=stages["staging"], codename="fly", user=developer)
    assert not EnvironmentUserObjectPermission.objects.filter(user=outsider).exists()


# --- notifications ----------------------------------------------------------------------------


def test_environment_emit_sends_to_the_policy_channels(org, org_admin, stages):
    listening, _ = channel_create(actor=org_admin, organization=org, name="ops", kind="email", target="ops@example.com")
    deaf, _ = channel_create(
        actor=org_admin, organization=org, name="runs", kind="email", target="r@example.com", events=["run.failed"]
    )
    unnamed, _ = channel_create(actor=org_admin, organization=org, name="other", kind="email", target="o@example.com")
    production = stages["production"]
    services.runtime_policy_update(actor=org_admin, environment=production, notification_channels=[listening, deaf])
    production = Environment.objects.get(pk=production.pk)
    _notifications, deliveries = services.environment_emit(production, "promotion.deployed", {"title": "v2 is live"})
    assert [d.channel for d in deliveries] == [listening]
    assert list(Delivery.objects.values_list("channel__name", "event")) == [("ops", "promotion.deployed")]
    payload = Delivery.objects.get().payload
    assert payload["environment"] == {"id": production.pk, "slug": "production", "kind": "production"}
    assert not Delivery.objects.filter(channel=unnamed).exists()


def test_environment_emit_without_channels_delivers_nothing(stages, members):
    _notifications, deliveries = services.environment_emit(
        stages["staging"], "promotion.requested", {}, users=[members["staging_approver"]]
    )
    assert deliveries == []
    assert not Delivery.objects.exists()
    assert len(_notifications) == 1


def test_now_is_the_default_moment(org_admin, stages):
    from django.utils import timezone

    now = timezone.now()
    services.freeze_window_create(
        actor=org_admin,
        environment=stages["staging"],
        kind=FreezeKind.ONE_OFF,
        starts_at=now - timedelta(minutes=1),
        ends_at=now + timedelta(hours=1),
        reason="incident",
    )
    assert services.active_freeze(stages["staging"]) is not None


def test_overlapping_recurring_windows_have_no_gap_before_the_next_start(org_admin, stages):
    # Every 10 minutes for 15 minutes: 09:00-09:15 and 09:10-09:25 overlap, so 09:09:59.5 is frozen.
    window = services.freeze_window_create(
        actor=org_admin,
        environment=stages["staging"],
        kind=FreezeKind.RECURRING,
        cron="*/10 * * * *",
        duration_minutes=15,
        timezone="UTC",
        reason="busy",
    )
    assert window.active_at(_utc(2025, 6, 2, 9, 9, 59, 500_000))
    assert window.active_at(_utc(2025, 6, 2, 9, 10))
