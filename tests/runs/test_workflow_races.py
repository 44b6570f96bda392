"""Schedules: a tick fires exactly once, whatever beats race; deploying switches schedules on; a
disabled schedule does not fire. The race runs on PostgreSQL only (SQLite serialises writers)."""

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.utils import timezone

from apps.runs import services
from apps.runs.models import Run, RunStatus, Schedule, ScheduleFire, Trigger
from tests import postgres as pg

EVERY_FIVE_MINUTES = "*/5 * * * *"


def _after(minutes: int) -> datetime:
    return timezone.now() + timedelta(minutes=minutes)


def _tick_at_or_before(moment: datetime) -> datetime:
    moment = moment.astimezone(UTC)
    return moment.replace(minute=moment.minute - moment.minute % 5, second=0, microsecond=0)


@pytest.fixture
def schedule(run_setup, stages, org_admin):
    """An enabled five-minute schedule of the pipeline in development (owned by the org admin)."""
    return services.schedule_save(
        actor=org_admin,
        pipeline=run_setup["pipeline"],
        environment=stages["development"],
        cron=EVERY_FIVE_MINUTES,
        enabled=True,
    )


@pytest.mark.race
@pytest.mark.django_db(transaction=True)
def test_a_tick_dispatched_by_two_beats_at_once_creates_one_run(schedule, no_dispatch):
    pg.require_test_database(connection, "Race tests need PostgreSQL: SQLite serialises writers, so nothing would race")
    beats = 4
    for round_number in range(3):  # three ticks, each fired by four beats released together
        now = _after(10 + 5 * round_number)
        barrier = threading.Barrier(beats)
        results, errors = [], []

        def beat(now=now, barrier=barrier, results=results, errors=errors):
            try:
                barrier.wait(timeout=30)
                results.append(services.schedules_fire_due(now=now))
            except Exception as exc:  # reported below: an assertion in a thread would be lost
                errors.append(exc)
            finally:
                connection.close()

        threads = [threading.Thread(target=beat) for _ in range(beats)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not any(t.is_alive() for t in threads), "a beat thread hung"
        assert errors == []

        tick = _tick_at_or_before(now)
        created = [pk for result in results for pk in result]
        assert len(created) == 1, f"round {round_number}: {results}"
        (fire,) = ScheduleFire.objects.filter(schedule=schedule, scheduled_for=tick)
        assert fire.run_id == created[0]
        assert Run.objects.filter(trigger=Trigger.SCHEDULE).count() == round_number + 1
    assert ScheduleFire.objects.filter(schedule=schedule).count() == 3
    assert sorted(no_dispatch) == sorted(Run.objects.values_list("pk", flat=True))


@pytest.mark.django_db
def test_firing_twice_for_the_same_tick_creates_one_run(schedule, no_dispatch):
    now = _after(10)

    first = services.schedules_fire_due(now=now)
    second = services.schedules_fire_due(now=now)

    assert len(first) == 1 and second == []
    run = Run.objects.get(pk=first[0])
    assert run.trigger == Trigger.SCHEDULE and run.status == RunStatus.QUEUED and run.requested_by == schedule.owner
    schedule.refresh_from_db()
    assert schedule.last_fired_for == _tick_at_or_before(now)
    # Even a beat that did not see the tick recorded (stale last_fired_for) cannot fire it again:
    # the (schedule, tick) unique constraint stops it.
    Schedule.objects.filter(pk=schedule.pk).update(last_fired_for=None)
    assert services.schedules_fire_due(now=now) == []
    assert ScheduleFire.objects.filter(schedule=schedule).count() == 1 and Run.objects.count() == 1
    # The next tick fires.
    assert len(services.schedules_fire_due(now=now + timedelta(minutes=5))) == 1


@pytest.mark.django_db
def test_a_disabled_schedule_does_not_fire(run_setup, stages, org_admin, no_dispatch):
    services.schedule_save(
        actor=org_admin,
        pipeline=run_setup["pipeline"],
        environment=stages["development"],
        cron=EVERY_FIVE_MINUTES,
        enabled=False,
    )

    assert services.schedules_fire_due(now=_after(30)) == []
    assert not ScheduleFire.objects.exists() and not Run.objects.exists() and no_dispatch == []


@pytest.mark.django_db
def test_a_tick_not_yet_due_does_not_fire(schedule, no_dispatch):
    assert services.schedules_fire_due(now=schedule.created_at - timedelta(minutes=1)) == []
    assert not ScheduleFire.objects.exists()


@pytest.mark.django_db
def test_deploying_switches_the_environments_schedules_on(run_setup, stages, org_admin, no_dispatch):
    pipeline, version = run_setup["pipeline"], run_setup["version"]
    development, staging = stages["development"], stages["staging"]
    waiting = services.schedule_save(actor=org_admin, pipeline=pipeline, environment=staging, cron=EVERY_FIVE_MINUTES)
    elsewhere = services.schedule_save(
        actor=org_admin, pipeline=pipeline, environment=development, cron=EVERY_FIVE_MINUTES
    )
    assert waiting.enabled is False and elsewhere.enabled is False  # nothing deployed yet
    assert services.schedules_fire_due(now=_after(10)) == []

    deployment = services.deploy(actor=org_admin, pipeline=pipeline, environment=staging, version=version)

    waiting.refresh_from_db()
    elsewhere.refresh_from_db()
    assert waiting.enabled is True and elsewhere.enabled is False
    (run_pk,) = services.schedules_fire_due(now=_after(10))
    run = Run.objects.get(pk=run_pk)
    assert run.environment == staging and run.deployment == deployment and run.version == version
    # A schedule created after the deployment starts enabled.
    later = services.schedule_save(actor=org_admin, pipeline=pipeline, environment=staging, cron="0 * * * *")
    assert later.enabled is True


@pytest.mark.django_db
def test_a_schedule_whose_owner_was_deleted_is_not_fired(schedule, no_dispatch, caplog):
    Schedule.objects.filter(pk=schedule.pk).update(owner=None)  # what deleting the account leaves (SET_NULL)

    assert services.schedules_fire_due(now=_after(10)) == []

    assert not ScheduleFire.objects.exists() and not Run.objects.exists()
    assert f"schedule {schedule.pk}: its owner was deleted" in caplog.text
