"""Idempotency-Key on POST /api/v1/runs/ (the mechanism promotions use, apps.core.idempotency): a
retried POST returns the run started first (200), the same key with another body is a 409, a
malformed key a 400; keys are per person. On PostgreSQL, twenty clients posting at once with one
key get one run (201 once, 200 for the rest), five rounds."""

import pytest
from django.db import connection

from apps.runs.models import Run
from tests.approvals.test_idempotency_races import THREADS, assert_one_answer, post_together

RUNS = "/api/v1/runs/"
ROUNDS = 5


def body(run_setup, **extra):
    return {"pipeline": run_setup["pipeline"].pk, "environment": "development", "executor": "external", **extra}


@pytest.mark.django_db
def test_a_retried_post_with_the_same_key_returns_the_first_run(api, members, run_setup):
    client = api(members["developer"])
    first = client.post(RUNS, body(run_setup), format="json", HTTP_IDEMPOTENCY_KEY="nightly-1")
    assert first.status_code == 201, first.content
    again = client.post(RUNS, body(run_setup), format="json", HTTP_IDEMPOTENCY_KEY="nightly-1")
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert Run.objects.count() == 1
    other = client.post(RUNS, body(run_setup, sample=True), format="json", HTTP_IDEMPOTENCY_KEY="nightly-1")
    assert other.status_code == 409 and "Idempotency-Key" in other.json()["error"]["message"]
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    # without a key, or with another, a new run starts
    assert client.post(RUNS, body(run_setup), format="json").status_code == 201
    assert client.post(RUNS, body(run_setup), format="json", HTTP_IDEMPOTENCY_KEY="nightly-2").status_code == 201
    assert Run.objects.count() == 3


@pytest.mark.django_db
def test_keys_are_per_person(api, members, org_admin, run_setup):
    mine = api(members["developer"]).post(RUNS, body(run_setup), format="json", HTTP_IDEMPOTENCY_KEY="k")
    theirs = api(org_admin).post(RUNS, body(run_setup), format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert mine.status_code == theirs.status_code == 201 and mine.json()["id"] != theirs.json()["id"]


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["has space", "x" * 201, "", "ключ"])
def test_a_malformed_key_is_a_400_naming_it(api, members, run_setup, key):
    response = api(members["developer"]).post(RUNS, body(run_setup), format="json", HTTP_IDEMPOTENCY_KEY=key)
    assert response.status_code == 400 and "Idempotency-Key" in response.json()["error"]["fields"]
    assert not Run.objects.exists()


@pytest.mark.django_db
def test_a_refused_run_leaves_the_key_free(api, members, run_setup):
    client = api(members["developer"])
    refused = client.post(RUNS, body(run_setup, version=99), format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert refused.status_code == 400
    assert client.post(RUNS, body(run_setup), format="json", HTTP_IDEMPOTENCY_KEY="k").status_code == 201


@pytest.mark.race
@pytest.mark.django_db(transaction=True)
def test_twenty_identical_posts_with_one_key_start_one_run(api, members, run_setup):
    if connection.vendor != "postgresql":
        pytest.skip("Race tests need PostgreSQL: SQLite serialises writers, so nothing would race.")
    clients = [api(members["developer"]) for _ in range(THREADS)]
    for round_number in range(ROUNDS):
        key = f"nightly-{round_number}"
        run_id = assert_one_answer(post_together(clients, RUNS, body(run_setup), key))
        assert list(Run.objects.filter(idempotency_key=key).values_list("pk", flat=True)) == [run_id]
    assert Run.objects.count() == ROUNDS
