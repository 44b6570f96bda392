"""One error shape for every failure the API can answer with, and the request id that ties a
response to the logs."""

import re

import pytest
from rest_framework.test import APIClient

from apps.tenancy import services as tenancy_services

from .error_urls import LEAKED_TEXT

pytestmark = pytest.mark.django_db

HEX_ID = re.compile(r"^[0-9a-f]{32}$")


def assert_error(response, status: int, code: str | None = None) -> dict:
    """The response is JSON {"error": {"code", "message", "fields"?}} with the given status."""
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) <= {"code", "message", "fields"}, error
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    if "fields" in error:
        assert all(isinstance(v, list) and all(isinstance(m, str) for m in v) for v in error["fields"].values())
    if code is not None:
        assert error["code"] == code, error
    return error


# --- 401 ------------------------------------------------------------------------------------


def test_401_without_credentials(api, org):
    response = api().get("/api/v1/organizations/")
    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "header",
    ["Bearer not-a-real-key", "Bearer pnx_nope_nope", "Bearer two parts", "Bearer"],
    ids=["unknown", "unknown-shaped", "three-words", "no-token"],
)
def test_401_with_bad_bearer_token(org, header):
    client = APIClient()
    response = client.get("/api/v1/organizations/", HTTP_AUTHORIZATION=header)
    assert_error(response, 401, "authentication_failed")


def test_401_with_revoked_key(api, org, org_admin):
    key, token = tenancy_services.api_key_create(actor=org_admin, organization=org, name="gone", scopes=["read"])
    assert api(token=token).get("/api/v1/organizations/").status_code == 200
    tenancy_services.api_key_revoke(actor=org_admin, key=key)
    assert_error(api(token=token).get("/api/v1/organizations/"), 401, "authentication_failed")


# --- 403 ------------------------------------------------------------------------------------


def test_403_when_the_key_lacks_the_scope(api, run_key):
    _, token = run_key
    error = assert_error(api(token=token).get("/api/v1/organizations/"), 403, "permission_denied")
    assert "'read' scope" in error["message"]


def test_403_from_a_domain_rule(api, members):
    response = api(members["developer"]).post("/api/v1/organizations/", {"name": "Initech"})
    assert_error(response, 403, "permission_denied")


# --- 404 ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/no-such-thing/", "/api/v1/environments/1/no-such-action/", "/api/v2/"])
def test_404_for_an_unknown_api_path(api, org_admin, path):
    assert_error(api(org_admin).get(path), 404, "not_found")


def test_404_for_an_unknown_api_path_even_anonymously(api):
    assert_error(api().get("/api/v1/no-such-thing/"), 404, "not_found")


def test_404_for_an_unknown_id(api, org_admin, stages):
    assert_error(api(org_admin).get("/api/v1/environments/987654/"), 404, "not_found")
    assert_error(api(org_admin).get("/api/v1/environments/not-a-number/"), 404, "not_found")


def test_404_for_an_object_you_cannot_see(api, outsider, stages):
    assert_error(api(outsider).get(f"/api/v1/environments/{stages['production'].pk}/"), 404, "not_found")


def test_404_outside_the_api_is_not_json(client, db):
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    assert not response["Content-Type"].startswith("application/json")


# --- 405 ------------------------------------------------------------------------------------


def test_405_for_an_unsupported_method(api, org_admin, members):
    membership = members["developer"].memberships.get()
    response = api(org_admin).put(f"/api/v1/memberships/{membership.pk}/", {"role": "admin"})
    error = assert_error(response, 405, "method_not_allowed")
    assert "PUT" in error["message"]


def test_405_on_a_list(api, org_admin, org):
    assert_error(api(org_admin).delete("/api/v1/organizations/"), 405, "method_not_allowed")


# --- 429 ------------------------------------------------------------------------------------


@pytest.fixture
def tight_throttle(settings):
    rest = dict(settings.REST_FRAMEWORK)
    rest["DEFAULT_THROTTLE_RATES"] = {"api_key": "2/minute", "user": "2/minute", "anon": "2/minute"}
    settings.REST_FRAMEWORK = rest


def test_429_with_retry_after(api, org_admin, org, tight_throttle):
    client = api(org_admin)
    assert client.get("/api/v1/organizations/").status_code == 200
    assert client.get("/api/v1/organizations/").status_code == 200
    response = client.get("/api/v1/organizations/")
    assert_error(response, 429, "throttled")
    assert int(response["Retry-After"]) > 0


def test_429_for_an_api_key(api, org, org_admin, tight_throttle):
    _, token = tenancy_services.api_key_create(actor=org_admin, organization=org, name="busy", scopes=["read"])
    client = api(token=token)
    statuses = [client.get("/api/v1/organizations/").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


# --- 500 ------------------------------------------------------------------------------------


@pytest.fixture
def exploding_urls(settings):
    settings.ROOT_URLCONF = "tests.core.error_urls"


@pytest.mark.parametrize("path", ["/api/v1/test-explode/", "/api/v1/test-explode-plain/"], ids=["drf", "plain"])
def test_500_quotes_the_request_id_and_leaks_nothing(api, org_admin, exploding_urls, path, caplog):
    client = api(org_admin)
    client.raise_request_exception = False
    response = client.get(path)
    error = assert_error(response, 500, "server_error")
    request_id = response["X-Request-ID"]
    assert HEX_ID.match(request_id)
    assert request_id in error["message"]
    text = response.content.decode()
    assert LEAKED_TEXT not in text
    assert "RuntimeError" not in text
    assert "Traceback" not in text
    # The details go to the log, under the same request id.
    logged = [r for r in caplog.records if r.exc_info and LEAKED_TEXT in str(r.exc_info[1])]
    assert logged, "the exception must be logged"


def test_500_keeps_a_well_formed_incoming_request_id(api, org_admin, exploding_urls):
    response = api(org_admin).get("/api/v1/test-explode/", HTTP_X_REQUEST_ID="trace-42.a_b")
    error = assert_error(response, 500, "server_error")
    assert response["X-Request-ID"] == "trace-42.a_b"
    assert "trace-42.a_b" in error["message"]


# --- request id -----------------------------------------------------------------------------


def test_request_id_is_made_when_absent(api, org_admin, org):
    first = api(org_admin).get("/api/v1/organizations/")["X-Request-ID"]
    second = api(org_admin).get("/api/v1/organizations/")["X-Request-ID"]
    assert HEX_ID.match(first) and HEX_ID.match(second)
    assert first != second


@pytest.mark.parametrize("path", ["/api/v1/organizations/", "/api/v1/no-such-thing/", "/healthz"])
def test_well_formed_request_id_is_echoed(api, org_admin, org, path):
    response = api(org_admin).get(path, HTTP_X_REQUEST_ID="abc-123_DEF.7")
    assert response["X-Request-ID"] == "abc-123_DEF.7"


@pytest.mark.parametrize(
    "incoming",
    ["has space", "x" * 65, "semi;colon", "new\\nline", "<script>", "", "ünïcode"],
    ids=["space", "too-long", "semicolon", "backslash", "markup", "empty", "non-ascii"],
)
def test_malformed_request_id_is_replaced(api, org_admin, org, incoming):
    response = api(org_admin).get("/api/v1/organizations/", HTTP_X_REQUEST_ID=incoming)
    assert response.status_code == 200
    assert HEX_ID.match(response["X-Request-ID"])
    assert response["X-Request-ID"] != incoming


def test_request_id_on_error_responses(api):
    response = api().get("/api/v1/organizations/", HTTP_X_REQUEST_ID="anon-1")
    assert response.status_code == 401
    assert response["X-Request-ID"] == "anon-1"


# --- the schema documents all of this -------------------------------------------------------


def test_schema_documents_the_error_shape_on_every_operation(client):
    schema = client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    error = schema["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    assert error["properties"]["error"]["required"] == ["code", "message"]
    missing = []
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            # Which statuses each operation documents is tests/core/test_openapi_errors.py's; here:
            # every documented error (but the web server's HTML 414) has the Error shape, and 400,
            # 429 and 500 are documented everywhere.
            documented = {code for code in operation["responses"] if code[0] in "45" and code != "414"}
            for status in sorted(documented | {"400", "429", "500"}):
                response = operation["responses"].get(status, {})
                ref = response.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref")
                if ref != "#/components/schemas/Error":
                    missing.append(f"{method.upper()} {path} {status}")
            if "Retry-After" not in operation["responses"].get("429", {}).get("headers", {}):
                missing.append(f"{method.upper()} {path} 429 Retry-After")
    assert not missing, missing
