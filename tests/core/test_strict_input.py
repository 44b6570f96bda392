"""Strict JSON bodies, linear-time user patterns and webhook signature checks on hostile input."""

import json

import pytest

from apps.core import patterns
from apps.core.parsers import MAX_JSON_DEPTH, StrictJSONError, loads_strict
from apps.notifications import signing
from apps.variables.models import Variable

pytestmark = pytest.mark.django_db

VARIABLE = '{"organization": "acme", "name": "region", "type": "string", "default_value": "eu"'


@pytest.mark.parametrize(
    "body, problem",
    [
        ("[" * 10_000 + "]" * 10_000, "Nested deeper"),
        ('{"organization": "acme", "name": "a", "name": "b", "type": "string"}', "Duplicate key 'name'"),
        (VARIABLE + ', "min_value": NaN}', "NaN"),
        (VARIABLE + ', "min_value": Infinity}', "Infinity"),
        (VARIABLE + ', "min_value": -Infinity}', "Infinity"),
        (VARIABLE + ', "choices": [' + "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1) + "]}", "Nested"),
    ],
    ids=["10000-deep", "duplicate-key", "nan", "infinity", "minus-infinity", "past-the-depth-limit"],
)
def test_json_bodies_are_strict(api, org_admin, members, body, problem):
    response = api(org_admin).generic("POST", "/api/v1/variables/", body, content_type="application/json")
    assert response.status_code == 400, response.content[:300]
    error = response.json()["error"]
    assert error["code"] == "parse_error"
    assert problem in error["message"]
    assert not Variable.objects.exists()


def test_json_within_the_limits_is_read():
    nested = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert loads_strict(nested) == json.loads(nested)
    with pytest.raises(StrictJSONError):
        loads_strict("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1))
    assert loads_strict('{"a": 1e308, "b": "NaN"}') == {"a": 1e308, "b": "NaN"}
    with pytest.raises(StrictJSONError):
        loads_strict("[1e999]")  # overflows to infinity: not JSON's


def test_a_catastrophic_pattern_matches_in_linear_time():
    """(a+)+b against a run of a's backtracks exponentially in Python's re (about 7 s at 28 characters,
    doubling per character); with RE2 100,000 characters are nothing."""
    assert not patterns.fullmatch("(a+)+b", "a" * 100_000)
    assert patterns.fullmatch("(a+)+b", "a" * 1000 + "b")


@pytest.mark.parametrize(
    "pattern, problem",
    [("(?=a)a", "look-around"), (r"(a)\1", "back-references"), ("a" * 501, "500 characters"), ("(", "valid")],
)
def test_patterns_re2_cannot_take_are_a_400_naming_the_field(api, org_admin, members, pattern, problem):
    body = {"organization": "acme", "name": "region", "type": "string", "regex": pattern}
    response = api(org_admin).post("/api/v1/variables/", body, format="json")
    assert response.status_code == 400, response.content[:300]
    assert "regex" in response.json()["error"]["fields"]
    assert problem in json.dumps(response.json())
    assert not Variable.objects.exists()


def test_a_value_against_a_catastrophic_pattern_answers_at_once(api, org_admin, members):
    body = {"organization": "acme", "name": "region", "type": "string", "regex": "(a+)+b", "default_value": "a" * 4000}
    response = api(org_admin).post("/api/v1/variables/", body, format="json")
    assert response.status_code == 400
    assert "default_value" in response.json()["error"]["fields"]


@pytest.mark.parametrize("field", ["environment_name_pattern"])
def test_the_organization_pattern_goes_through_re2(org, field):
    from django.core.exceptions import ValidationError

    setattr(org, field, "(?<=x)y")
    with pytest.raises(ValidationError) as caught:
        org.full_clean()
    assert field in caught.value.message_dict


@pytest.mark.parametrize("signature", ["sha256=é", "ü" * 71, "sha256=\u0663", ""])
def test_verify_answers_false_on_any_signature_it_did_not_make(signature):
    body, secret = b'{"event": "run.failed"}', "s3cret"
    assert signing.verify(secret, "1700000000", body, signature, now=1700000000) is False
    assert signing.verify(secret, "\u0661\u0667", body, signing.sign(secret, 17, body), now=17) is False
    assert signing.verify(secret, "1700000000", body, signing.sign(secret, 1700000000, body), now=1700000000)
