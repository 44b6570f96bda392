"""Notification tasks have their own Celery queue: a slow or retried webhook never waits in front of
a deployment or a run (planasonix_env/settings.py's celery_queues; README: Running in production).

The destination is read where Celery publishes (`app.amqp.send_task_message`), after the router, so
these tests follow every way work is enqueued: a task object, a registered name, a countdown, beat."""

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from apps.approvals.tasks import execute_promotion
from apps.core.queue import enqueue
from apps.notifications import services
from apps.notifications.models import ChannelKind, Delivery, Event
from apps.notifications.tasks import deliver
from planasonix_env import settings as production_settings
from planasonix_env.celery import app


@pytest.fixture
def published(monkeypatch):
    """(task name, queue name) of every message published, instead of publishing it."""
    sent: list[tuple[str, str]] = []

    def record(producer, name, message, queue=None, **options):
        sent.append((name, queue.name if queue is not None else ""))

    monkeypatch.setattr(app.amqp, "send_task_message", record)
    return sent


def test_deliveries_go_to_the_notifications_queue_and_deployments_to_the_default_one(
    org, make_channel, published, django_capture_on_commit_callbacks
):
    channel, _secret = make_channel(ChannelKind.WEBHOOK)
    with django_capture_on_commit_callbacks(execute=True):
        _, (delivery,) = services.emit(Event.PROMOTION_DEPLOYED, {"promotion": 1}, organization=org, channels=[channel])
    enqueue(deliver, [delivery.pk], countdown=30)  # a retry's wake-up
    enqueue(execute_promotion, [1])
    enqueue("apps.runs.tasks.execute_run", [1])

    notifications, default = settings.NOTIFICATIONS_QUEUE, settings.CELERY_TASK_DEFAULT_QUEUE
    assert published == [
        (deliver.name, notifications),
        (deliver.name, notifications),
        (execute_promotion.name, default),
        ("apps.runs.tasks.execute_run", default),
    ]
    assert notifications != default


def test_the_sweep_and_its_resends_go_to_the_notifications_queue(org, make_channel, published):
    channel, _secret = make_channel(ChannelKind.WEBHOOK)
    services.emit(Event.PROMOTION_DEPLOYED, {"promotion": 1}, organization=org, channels=[channel])
    Delivery.objects.update(next_attempt_at=timezone.now() - timedelta(minutes=5))  # due, never picked up

    for entry in production_settings.CELERY_BEAT_SCHEDULE.values():  # as beat sends them: by name
        app.send_task(entry["task"])
    services.deliveries_sweep()

    beat = [(name, queue) for name, queue in published if name != deliver.name]
    assert beat and all(
        queue
        == (
            settings.NOTIFICATIONS_QUEUE
            if name.startswith("apps.notifications.")
            else settings.CELERY_TASK_DEFAULT_QUEUE
        )
        for name, queue in beat
    ), beat
    assert ("apps.notifications.tasks.sweep_deliveries", settings.NOTIFICATIONS_QUEUE) in beat
    assert published[-1] == (deliver.name, settings.NOTIFICATIONS_QUEUE)


def test_a_worker_started_without_queues_consumes_both():
    """An operator's existing `celery worker` (no -Q) keeps delivering notifications after this change."""
    assert list(app.amqp.queues) == [settings.CELERY_TASK_DEFAULT_QUEUE, settings.NOTIFICATIONS_QUEUE]
