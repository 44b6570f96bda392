"""The resolve API's warm path (apps.resolution.selectors.resolve_target, engine.resolve_encoded):
the API key's query, one query naming the pipeline, environment, version and revision, then the
answer's JSON as cached; every write that changes the answer still changes what is served, and
visibility and bad parameters answer as before."""

import json

from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.environments import services as env_services
from apps.pipelines import services as pipeline_services
from apps.tenancy import services as tenancy_services
from apps.variables import services as variable_services
from apps.variables.models import Variable

from .conftest import GRAPH


def _url(pipeline) -> str:
    return f"/api/v1/pipelines/{pipeline.pk}/resolve/"


def _key_client(api, org, owner, scopes=("read",)):
    _key, token = tenancy_services.api_key_create(
        actor=owner, organization=org, name=f"{owner.username}-warm", scopes=list(scopes), owner=owner
    )
    return api(token=token)


def test_a_warm_resolve_is_two_queries_and_the_same_answer(configured, org, org_admin, pipeline, api):
    client = _key_client(api, org, org_admin)
    first = client.get(_url(pipeline), {"environment": "production"})
    assert first.status_code == 200, first.content
    assert first["Content-Type"] == "application/json"
    with CaptureQueriesContext(connection) as warm:
        again = client.get(_url(pipeline), {"environment": "production"})
    assert again.status_code == 200
    assert len(warm) == 2, [q["sql"][:120] for q in warm.captured_queries]  # the key; the target
    assert again.content == first.content
    body = again.json()
    assert body["variables"]["db_schema"]["value"] == "prod"
    assert body["version"]["number"] == 1
    assert "CANARY" not in json.dumps(body)
    # The browsable API renders the same answer (not the cached bytes).
    html = client.get(_url(pipeline), {"environment": "production"}, HTTP_ACCEPT="text/html")
    assert html.status_code == 200 and b"db_schema" in html.content


def test_writes_change_what_a_warm_request_is_served(configured, org, org_admin, pipeline, stages, api):
    client = _key_client(api, org, org_admin)

    def served(**params):
        response = client.get(_url(pipeline), {"environment": "production", **params})
        assert response.status_code == 200, response.content
        return response.json()

    assert served()["variables"]["db_schema"]["value"] == "prod"
    variable = Variable.objects.get(pk=configured.pk)
    variable_services.variable_override_set(
        actor=org_admin, variable=variable, environment=stages["production"], value="p2"
    )
    assert served()["variables"]["db_schema"]["value"] == "p2"
    env_services.runtime_policy_update(actor=org_admin, environment=stages["production"], max_rows=5)
    assert served()["policy"]["max_rows"] == 5
    # A new version is the latest at once; the first stays reachable by number.
    graph = {**GRAPH, "nodes": [{**GRAPH["nodes"][0], "query": "SELECT 2 FROM {{ db_schema }}.o"}, GRAPH["nodes"][1]]}
    pipeline_services.pipeline_version_create(actor=org_admin, pipeline=pipeline, graph=graph)
    latest = served()
    assert latest["version"]["number"] == 2
    assert latest["graph"]["nodes"][0]["query"] == "SELECT 2 FROM p2.o"
    assert served(version="1")["version"]["number"] == 1


def test_visibility_and_bad_parameters_answer_as_before(configured, org, org_admin, pipeline, members, outsider, api):
    developer = members["developer"]
    client = _key_client(api, org, developer)
    assert client.get(_url(pipeline), {"environment": "production"}).status_code == 403
    assert client.get(_url(pipeline), {"environment": "development"}).status_code == 200
    assert api(outsider).get(_url(pipeline), {"environment": "production"}).status_code == 404
    # An outsider learns nothing from the parameters: the pipeline's 404 comes first.
    assert api(outsider).get(_url(pipeline), {"environment": "nope", "version": "x"}).status_code == 404
    admin = _key_client(api, org, org_admin)
    assert admin.get("/api/v1/pipelines/999999999/resolve/", {"environment": "production"}).status_code == 404
    for params, field in (
        ({"environment": "nope"}, "environment"),
        ({}, "environment"),
        ({"environment": "production", "version": "7"}, "version"),
        ({"environment": "production", "version": "x"}, "version"),
    ):
        response = admin.get(_url(pipeline), params)
        assert response.status_code == 400, (params, response.content)
        assert field in response.json()["error"]["fields"], (params, response.json())


def test_a_key_of_another_organization_does_not_see_the_pipeline(
    configured, org, org_admin, pipeline, platform_staff, api
):
    from apps.tenancy.models import Edition

    other = tenancy_services.organization_create(
        actor=platform_staff, name="Other", slug="other", edition=Edition.ENTERPRISE, owner=org_admin
    )
    client = _key_client(api, other, org_admin)
    assert client.get(_url(pipeline), {"environment": "production"}).status_code == 404
