"""Idempotency-Key under concurrency on PostgreSQL (SQLite serialises writers): twenty clients
posting the same promotion request with one key at once get that one request (201 once, 200 for
the rest), never a 400 naming a constraint nor a 409; five rounds, a new key each round."""

import threading
from collections import Counter

import pytest
from django.db import connection

from apps.approvals import services
from apps.approvals.models import PromotionRequest

from .workflow_support import run_together

pytestmark = [pytest.mark.race, pytest.mark.django_db(transaction=True)]

THREADS = 20
ROUNDS = 5
PROMOTIONS = "/api/v1/promotions/"


@pytest.fixture(autouse=True)
def _postgresql_only():
    if connection.vendor != "postgresql":
        pytest.skip("Race tests need PostgreSQL: SQLite serialises writers, so nothing would race.")


def post_together(clients, url, body, key) -> list[tuple[int, dict]]:
    lock = threading.Lock()
    responses, unexpected = [], []

    def post(client):
        def work():
            try:
                response = client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY=key)
            except Exception as exc:
                with lock:
                    unexpected.append(repr(exc))
            else:
                with lock:
                    responses.append((response.status_code, response.json()))

        return work

    run_together([post(client) for client in clients])
    assert unexpected == []
    return responses


def assert_one_answer(responses) -> int:
    """Exactly one 201, the rest 200, all naming the same object; returns its id."""
    statuses = Counter(status for status, _ in responses)
    assert statuses == {201: 1, 200: THREADS - 1}, [(s, b.get("error")) for s, b in responses if s not in (200, 201)]
    (object_id,) = {body["id"] for _, body in responses}
    return object_id


def test_twenty_identical_posts_with_one_key_make_one_request(promo, api):
    p = promo
    clients = [api(p["developer"]) for _ in range(THREADS)]  # sessions exist before the race
    body = {"pipeline": p["pipeline"].pk, "version": 1, "source": "development", "reason": "nightly"}
    seen = []
    for round_number in range(ROUNDS):
        key = f"nightly-{round_number}"
        request_id = assert_one_answer(post_together(clients, PROMOTIONS, body, key))
        assert list(PromotionRequest.objects.filter(idempotency_key=key).values_list("pk", flat=True)) == [request_id]
        seen.append(request_id)
        # withdraw it, so that the next round may request the same version again (with its own key)
        services.promotion_cancel(actor=p["developer"], request=PromotionRequest.objects.get(pk=request_id))
    assert PromotionRequest.objects.count() == ROUNDS == len(set(seen))
