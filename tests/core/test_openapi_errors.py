"""Every operation of the generated OpenAPI schema documents the error statuses it can answer with,
in the one error shape (apps.core.openapi.AutoSchema). In-process and fast: a new endpoint that
publishes less fails here before the external schemathesis run (scripts/schemathesis-live.sh)
reports its undocumented status codes."""

import pytest
from drf_spectacular.generators import SchemaGenerator
from rest_framework.permissions import AllowAny, IsAuthenticated

from apps.core.openapi import requires_credentials

ERROR_REF = "#/components/schemas/Error"
METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture(scope="module")
def schema():
    return SchemaGenerator().get_schema(request=None, public=True)


def _operations(schema):
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            if method in METHODS:
                yield f"{method.upper()} {path}", method, operation


def _error_shaped(response) -> bool:
    return response.get("content", {}).get("application/json", {}).get("schema") == {"$ref": ERROR_REF}


def test_the_schema_has_operations_and_the_error_shape(schema):
    assert len(list(_operations(schema))) > 100
    error = schema["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    assert {"code", "message", "fields"} <= set(error["properties"]["error"]["properties"])


def test_every_operation_documents_the_errors_it_can_answer(schema):
    missing = []
    for label, method, operation in _operations(schema):
        responses = operation["responses"]
        parameters = operation.get("parameters", [])
        expected = {"400", "429", "500", "414"}  # 400: NUL bytes or malformed input reach every view
        security = operation.get("security") or []
        if security and {} not in security:
            expected |= {"401", "403"}
        if any(p["in"] == "path" for p in parameters):
            expected.add("404")
        if method != "get":
            expected |= {"409", "415"}
        if any(p["in"] == "header" and p["name"] == "Idempotency-Key" for p in parameters):
            expected.add("409")
        absent = sorted(expected - set(responses))
        if absent:
            missing.append(f"{label}: {', '.join(absent)}")
        for code, response in responses.items():
            if code[0] in "45" and code != "414" and not _error_shaped(response):
                missing.append(f"{label}: {code} is not the Error shape")
        if "Retry-After" not in responses.get("429", {}).get("headers", {}):
            missing.append(f"{label}: 429 without Retry-After")
    assert not missing, "\n".join(missing)


def test_400_names_the_body_and_query_parameters(schema):
    for label, _, operation in _operations(schema):
        description = operation["responses"]["400"]["description"]
        if "requestBody" in operation:
            assert "invalid body" in description, label
        if any(p["in"] == "query" for p in operation.get("parameters", [])):
            assert "query parameter" in description, label


def test_writes_on_resources_with_etags_document_412(schema):
    operation = schema["paths"]["/api/v1/variables/{id}/"]
    assert "412" in operation["patch"]["responses"]
    assert "412" in operation["delete"]["responses"]
    assert "412" not in operation["get"]["responses"]


def test_a_public_view_documents_no_401():
    class PublicView:
        def get_permissions(self):
            return [AllowAny()]

    class OpenView:  # no permission classes: anyone
        def get_permissions(self):
            return []

    class PrivateView:
        def get_permissions(self):
            return [AllowAny(), IsAuthenticated()]

    assert not requires_credentials(PublicView())
    assert not requires_credentials(OpenView())
    assert requires_credentials(PrivateView())


def test_read_only_fields_publish_blank_and_null_answers(schema):
    components = schema["components"]["schemas"]
    # default_environment is a nullable column: the API answers null for a project without one.
    assert components["Project"]["properties"]["default_environment"]["nullable"] is True
    # compare_url is a blank-allowed URL column: '' is an answer, not a schema violation.
    compare_url = components["PipelineVersionList"]["properties"]["compare_url"]
    assert "format" not in compare_url
    assert {"maxLength": 0} in compare_url["anyOf"]
