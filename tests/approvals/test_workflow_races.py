"""Concurrency on PostgreSQL (SQLite serialises writers, so nothing would race there): twenty threads
approving and executing one production request at once produce exactly one deployment, domain
errors only and, through the API, no 500."""

import threading
import time

import pytest
from django.db import connection

from apps.approvals import services
from apps.approvals.models import ApprovalDecision, PromotionRequest, PromotionState
from apps.core.errors import Conflict, PermissionDenied
from apps.runs.models import Deployment
from tests import postgres as pg

from .workflow_support import (
    execute_messages_held,
    production_approvers,
    request_production,
    run_together,
    stage_for_production,
)

pytestmark = [pytest.mark.race, pytest.mark.django_db(transaction=True)]

S = PromotionState
THREADS = 20
APPROVERS = 12  # the rest of the threads execute
EXECUTE_DEADLINE_SECONDS = 20


@pytest.fixture(autouse=True)
def _postgresql_only():
    pg.require_test_database(connection, "Race tests need PostgreSQL: SQLite serialises writers, so nothing would race")


def assert_deployed_once(request: PromotionRequest, production) -> None:
    request.refresh_from_db()
    assert request.state == S.DEPLOYED and request.attempts == 1, (request.state, request.failure_reason)
    (deployment,) = Deployment.objects.filter(environment=production)
    assert deployment.promotion_request_id == request.pk and request.deployment_id == deployment.pk
    assert ApprovalDecision.objects.filter(request=request).count() == 2


def test_twenty_threads_approving_and_executing_at_once_deploy_exactly_once(promo):
    p = promo
    stage_for_production(p)
    request = request_production(p)
    approvers = production_approvers(p, APPROVERS)
    lock = threading.Lock()
    approved, refused, deployed_by_thread, unexpected = [], [], [], []

    def approve(user):
        def work():
            try:
                services.promotion_approve(actor=user, request=PromotionRequest(pk=request.pk))
            except (Conflict, PermissionDenied) as exc:  # e.g. "it is approved": a domain answer
                with lock:
                    refused.append(exc.code)
            except Exception as exc:  # IntegrityError, OperationalError, ...: a failure
                with lock:
                    unexpected.append(repr(exc))
            else:
                with lock:
                    approved.append(user.pk)

        return work

    def execute():
        # Keep trying while the approvals land, as a worker woken early (or a sweep) would.
        deadline = time.monotonic() + EXECUTE_DEADLINE_SECONDS
        try:
            while time.monotonic() < deadline:
                result = services.promotion_execute(request.pk)
                if result is not None and result.state == S.DEPLOYED:
                    with lock:
                        deployed_by_thread.append(result.pk)
                if PromotionRequest.objects.filter(pk=request.pk, state__in=(S.PENDING, S.APPROVED)).exists():
                    time.sleep(0.005)
                    continue
                break
        except Exception as exc:
            with lock:
                unexpected.append(repr(exc))

    with execute_messages_held() as held:
        run_together([approve(user) for user in approvers] + [execute] * (THREADS - APPROVERS))
    assert unexpected == []
    assert len(approved) == 2, (approved, refused)
    assert len(refused) == APPROVERS - 2 and set(refused) == {"invalid_state"}
    assert held == [request.pk]  # approved once, so one wake-up

    # The wake-up message reaches a worker after the race: it finds the work done (or does it).
    for pk in held:
        result = services.promotion_execute(pk)
        if result is not None and result.state == S.DEPLOYED:
            deployed_by_thread.append(result.pk)
    assert deployed_by_thread == [request.pk]
    assert_deployed_once(request, p["production"])


def test_twenty_api_clients_approving_at_once_get_no_500_and_one_deployment(promo, api):
    p = promo
    stage_for_production(p)
    request = request_production(p)
    url = f"/api/v1/promotions/{request.pk}/approve/"
    people = [*production_approvers(p, THREADS - 2), p["developer"], p["staging_approver"]]
    clients = [api(user) for user in people]  # sessions are created before the race
    lock = threading.Lock()
    responses, unexpected = [], []

    def post(client):
        def work():
            try:
                response = client.post(url, {"comment": "ok"}, format="json")
            except Exception as exc:
                with lock:
                    unexpected.append(repr(exc))
            else:
                with lock:
                    responses.append((response.status_code, response.content[:300]))

        return work

    with execute_messages_held() as held:
        run_together([post(client) for client in clients])
    assert unexpected == []
    statuses = sorted(status for status, _ in responses)
    assert len(statuses) == THREADS and all(200 <= s < 500 for s in statuses), responses
    assert sum(200 <= s < 300 for s in statuses) == 2, responses
    assert held == [request.pk]

    for pk in held:
        services.promotion_execute(pk)
    assert_deployed_once(request, p["production"])
