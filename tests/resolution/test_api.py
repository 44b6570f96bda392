"""The resolution API: resolve (redacted, behind the view permission), diff and readiness matrix,
and the configuration ETag with If-Match."""

import json


def test_resolve_endpoint_redacts_and_respects_view_permission(configured, pipeline, api, org_admin, members, outsider):
    response = api(org_admin).get(f"/api/v1/pipelines/{pipeline.pk}/resolve/", {"environment": "production"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["variables"]["db_schema"]["value"] == "prod"
    assert "CANARY" not in json.dumps(body)
    developer = members["developer"]
    assert (
        api(developer).get(f"/api/v1/pipelines/{pipeline.pk}/resolve/", {"environment": "production"}).status_code
        == 403
    )
    assert (
        api(developer).get(f"/api/v1/pipelines/{pipeline.pk}/resolve/", {"environment": "development"}).status_code
        == 200
    )
    assert (
        api(outsider).get(f"/api/v1/pipelines/{pipeline.pk}/resolve/", {"environment": "production"}).status_code == 404
    )
    bad = api(org_admin).get(f"/api/v1/pipelines/{pipeline.pk}/resolve/", {"environment": "nope"})
    assert bad.status_code == 400 and "environment" in bad.json()["error"]["fields"]


def test_diff_readiness_matrix(configured, pipeline, project, api, org_admin):
    client = api(org_admin)
    diff = client.get(f"/api/v1/pipelines/{pipeline.pk}/diff/", {"from": "staging", "to": "production"}).json()
    assert diff["variables"]["db_schema"] == {
        "left": "stg",
        "left_source": "override:organization",
        "right": "prod",
        "right_source": "override:organization",
        "differs": True,
    }
    ready = client.get(f"/api/v1/pipelines/{pipeline.pk}/readiness/", {"environment": "production"}).json()
    assert ready["ready"] is True, ready
    matrix = client.get(f"/api/v1/projects/{project.pk}/matrix/").json()
    cells = {c["environment"]: c for c in matrix["variables"]["db_schema"]["cells"]}
    assert {slug: c["value"] for slug, c in cells.items()} == {
        "development": "dev",
        "staging": "stg",
        "production": "prod",
    }
    assert matrix["variables"]["db_schema"]["differs"] is True


def test_etag_if_match(configured, api, org_admin):
    client = api(org_admin)
    override_id = client.get("/api/v1/variable-overrides/", {"environment": "staging"}).json()["results"][0]["id"]
    first = client.get(f"/api/v1/variable-overrides/{override_id}/")
    etag = first["ETag"]
    ok = client.patch(f"/api/v1/variable-overrides/{override_id}/", {"value": "stg2"}, HTTP_IF_MATCH=etag)
    assert ok.status_code == 200, ok.content
    stale = client.patch(f"/api/v1/variable-overrides/{override_id}/", {"value": "stg3"}, HTTP_IF_MATCH=etag)
    assert stale.status_code == 412
    assert client.get(f"/api/v1/variable-overrides/{override_id}/").json()["value"] == "stg2"
