"""Helpers shared by the promotion workflow and race tests: v1 staged for production, more production
approvers, holding back the execute message, recording what a real worker ran, and bounded polls."""

import threading
import time
from contextlib import contextmanager
from unittest import mock

import pytest
from celery.signals import task_postrun
from django.contrib.auth import get_user_model
from django.db import OperationalError, connection
from django.utils import timezone

from apps.approvals import services
from apps.approvals.models import PromotionRequest, PromotionState
from apps.environments import permissions as perms
from apps.environments import services as env_services
from apps.runs import services as run_services
from apps.runs.models import Run, RunStatus, Trigger
from apps.tenancy import services as tenancy_services
from apps.tenancy.models import Role

EXECUTE = "apps.approvals.tasks.execute_promotion"
DEADLINE_SECONDS = 30
JOIN_SECONDS = 60


def run_together(workers) -> None:
    """Start one thread per callable behind a barrier; each closes its own connection."""
    barrier = threading.Barrier(len(workers))

    def wrap(work):
        def target():
            try:
                barrier.wait(timeout=30)
                work()
            finally:
                connection.close()

        return target

    threads = [threading.Thread(target=wrap(work)) for work in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=JOIN_SECONDS)
    assert not any(t.is_alive() for t in threads), "a thread hung"


def poll(check, *, describe, timeout: float = DEADLINE_SECONDS, interval: float = 0.1):
    """Call check() until it returns something truthy (returned) or fail after the deadline with
    describe(). On SQLite a read that meets the worker's write may report "locked": that is "not yet"."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except OperationalError as exc:
            if connection.vendor != "sqlite" or "locked" not in str(exc):
                raise
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout} s: {describe()}")
        time.sleep(interval)


def describe_request(pk: int) -> str:
    request = PromotionRequest.objects.get(pk=pk)
    return (
        f"promotion #{pk} is {request.state} (attempts {request.attempts}, lease {request.lease_expires_at}, "
        f"blocked {request.blocked_reason!r}, failure {request.failure_reason!r})"
    )


def wait_until_settled(pk: int, timeout: float = DEADLINE_SECONDS) -> PromotionRequest:
    """Poll until the request is neither approved nor deploying (the worker is done with it)."""

    def settled():
        request = PromotionRequest.objects.get(pk=pk)
        return request if request.state not in (PromotionState.APPROVED, PromotionState.DEPLOYING) else None

    return poll(settled, describe=lambda: describe_request(pk), timeout=timeout)


def stage_for_production(p: dict) -> None:
    """v1 deployed in staging with a passing validation run there (set up through the services, no
    worker), so that a staging → production request may be made."""
    run_services.deploy(actor=p["org_admin"], pipeline=p["pipeline"], environment=p["staging"], version=p["version"])
    now = timezone.now()
    Run.objects.create(
        pipeline=p["pipeline"],
        version=p["version"],
        environment=p["staging"],
        trigger=Trigger.VALIDATION,
        requested_by=p["org_admin"],
        status=RunStatus.SUCCEEDED,
        started_at=now,
        finished_at=now,
    )


def request_production(p: dict) -> PromotionRequest:
    """The developer asks to promote v1 from staging into production (two approvals needed)."""
    request, created = services.promotion_request_create(
        actor=p["developer"], pipeline=p["pipeline"], version=p["version"], source=p["staging"], reason="release"
    )
    assert created and request.target == p["production"] and request.state == PromotionState.PENDING
    return request


def production_approvers(p: dict, count: int) -> list:
    """`count` more members with view + approve_promotion on production."""
    users = []
    for number in range(count):
        user = get_user_model().objects.create_user(f"approver{number}", f"approver{number}@example.com", "pw")
        tenancy_services.membership_add(
            actor=p["org_admin"], organization=p["production"].organization, user=user, role=Role.MEMBER
        )
        for codename in (perms.VIEW, perms.APPROVE_PROMOTION):
            env_services.permission_grant(
                actor=p["org_admin"], environment=p["production"], codename=codename, user=user
            )
        perms.forget(user)
        users.append(user)
    return users


@contextmanager
def execute_messages_held():
    """The execute_promotion message a commit would publish is recorded instead (other tasks go out):
    as if the worker that fetched it died, or for the test to deliver it itself."""
    held = []
    real_enqueue = services._enqueue

    def enqueue(task, args, countdown=None):
        if task.name == EXECUTE:
            held.append(args[0])
        else:
            real_enqueue(task, args, countdown=countdown)

    with mock.patch.object(services.base, "_enqueue", enqueue):
        yield held


class TaskLog:
    """Records the tasks a real worker finished (name, task id, args), for bounded waits on them."""

    def __init__(self):
        self._lock = threading.Lock()
        self._done: list[tuple[str, str, list]] = []

    def _record(self, sender=None, task_id=None, args=None, **kwargs):
        with self._lock:
            self._done.append((getattr(sender, "name", ""), task_id, list(args or ())))

    def __enter__(self):
        task_postrun.connect(self._record, weak=False)
        return self

    def __exit__(self, *exc):
        task_postrun.disconnect(self._record)

    def finished(self, name: str, task_id: str | None = None) -> list[list]:
        with self._lock:
            return [args for n, tid, args in self._done if n == name and (task_id is None or tid == task_id)]

    def wait(self, name: str, count: int, *, task_id: str | None = None) -> list[list]:
        return poll(
            lambda: len(self.finished(name, task_id)) >= count and self.finished(name, task_id),
            describe=lambda: f"{name} finished {len(self.finished(name, task_id))} of {count} times",
        )
