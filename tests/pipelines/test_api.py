"""Projects and pipelines API: happy paths, graph errors naming node and field (400, nothing
written), immutable versions, permissions, ETag/If-Match, query counts."""

import pytest

from apps.pipelines import services
from apps.pipelines.models import Pipeline, PipelineVersion, Project
from tests.tenancy.conftest import assert_error

from .conftest import graph, node

pytestmark = pytest.mark.django_db


def test_project_and_pipeline_happy_path(api, org_admin, stages):
    client = api(org_admin)
    created = client.post(
        "/api/v1/projects/", {"organization": "acme", "name": "Sales", "default_environment": "staging"}, format="json"
    )
    assert created.status_code == 201, created.content
    project = created.json()
    assert (project["slug"], project["organization"], project["default_environment"]) == ("sales", "acme", "staging")
    assert client.get(f"/api/v1/projects/{project['id']}/").json()["name"] == "Sales"
    made = client.post("/api/v1/pipelines/", {"project": project["id"], "name": "Orders"}, format="json")
    assert made.status_code == 201, made.content
    pipeline_id = made.json()["id"]
    assert made.json()["latest_version"] is None
    for expected in (1, 2, 3):
        g = graph()
        node(g, "orders_out")["table"] = f"orders_v{expected}"
        response = client.post(
            f"/api/v1/pipelines/{pipeline_id}/versions/",
            {"graph": g, "message": f"v{expected}", "git_commit": "abcdef1", "git_branch": "main"},
            format="json",
        )
        assert response.status_code == 201, response.content
        assert response.json()["number"] == expected and response.json()["author"] == "orgadmin"
    listing = client.get(f"/api/v1/pipelines/{pipeline_id}/versions/").json()
    assert [v["number"] for v in listing["results"]] == [3, 2, 1]
    detail = client.get(f"/api/v1/pipelines/{pipeline_id}/versions/2/").json()
    assert detail["graph"]["nodes"][1]["table"] == "orders_v2" and detail["git_commit"] == "abcdef1"
    assert client.get(f"/api/v1/pipelines/{pipeline_id}/").json()["latest_version"] == 3
    assert_error(client.get(f"/api/v1/pipelines/{pipeline_id}/versions/9/"), 404)
    renamed = client.patch(f"/api/v1/pipelines/{pipeline_id}/", {"description": "all orders"}, format="json")
    assert renamed.status_code == 200 and renamed.json()["description"] == "all orders"


def test_versions_cannot_be_edited_or_deleted(api, org_admin, pipeline, version):
    client = api(org_admin)
    url = f"/api/v1/pipelines/{pipeline.pk}/versions/1/"
    for method in (client.patch, client.put, client.delete):
        response = method(url, {"message": "rewritten"}, format="json")
        assert response.status_code == 405, (method, response.status_code)
    bulk = client.put(f"/api/v1/pipelines/{pipeline.pk}/versions/", {"graph": graph()}, format="json")
    assert bulk.status_code == 405
    version.refresh_from_db()
    assert version.message == "first" and PipelineVersion.objects.count() == 1


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda g: node(g, "orders_src").update(type="teleporter"), "graph.nodes[orders_src].type"),
        (lambda g: node(g, "orders_out").pop("table"), "graph.nodes[orders_out].table"),
        (lambda g: node(g, "orders_src").update(colour="red"), "graph.nodes[orders_src].colour"),
        (lambda g: g.update(edges=[["orders_src", "ghost"]]), "graph.edges[0]"),
        (lambda g: g.update(edges=[["orders_src", "orders_out"], ["orders_out", "orders_out"]]), "graph.edges"),
        (lambda g: g.update(edges=[]), "graph.nodes[orders_out]"),
        (lambda g: g["nodes"].append(dict(g["nodes"][0])), "graph.nodes[orders_src].id"),
        (lambda g: node(g, "orders_src").update(type=["source"]), "graph.nodes[orders_src].type"),
    ],
)
def test_graph_errors_are_400_naming_node_and_field(api, org_admin, pipeline, mutate, field):
    g = graph()
    mutate(g)
    response = api(org_admin).post(f"/api/v1/pipelines/{pipeline.pk}/versions/", {"graph": g}, format="json")
    error = assert_error(response, 400, code="validation_error", field=field)
    assert field in error["message"] or any(field in name for name in error["fields"])
    assert not PipelineVersion.objects.exists()


def test_other_bad_input_is_400_and_writes_nothing(api, org_admin, project, pipeline):
    client = api(org_admin)
    for payload, field in [
        ({"graph": graph(), "git_commit": "NOT-A-SHA"}, "git_commit"),
        ({"graph": graph(), "git_merged": "yes"}, "git_merged"),
        ({"graph": graph(), "surprise": 1}, "surprise"),
        ({"message": "no graph"}, "graph"),
    ]:
        assert_error(
            client.post(f"/api/v1/pipelines/{pipeline.pk}/versions/", payload, format="json"), 400, field=field
        )
    assert not PipelineVersion.objects.exists()
    assert_error(
        client.post(
            "/api/v1/projects/", {"organization": "acme", "name": "X", "default_environment": "nope"}, format="json"
        ),
        400,
        field="default_environment",
    )
    assert_error(client.post("/api/v1/projects/", {"organization": "acme", "name": "Sales"}, format="json"), 409)
    assert_error(
        client.patch(f"/api/v1/projects/{project.pk}/", {"slug": "Not A Slug"}, format="json"), 400, field="slug"
    )
    assert_error(client.patch(f"/api/v1/projects/{project.pk}/", {"organization": "x"}, format="json"), 400)
    assert_error(
        client.post("/api/v1/pipelines/", {"project": project.pk, "name": ""}, format="json"), 400, field="name"
    )
    assert list(Project.objects.values_list("slug", flat=True)) == ["sales"]
    assert Pipeline.objects.count() == 1


def test_permissions(api, org, members, outsider, project, pipeline, version):
    developer = api(members["developer"])
    assert_error(developer.post("/api/v1/projects/", {"organization": "acme", "name": "Dev"}, format="json"), 403)
    assert_error(developer.patch(f"/api/v1/projects/{project.pk}/", {"name": "Renamed"}, format="json"), 403)
    assert_error(developer.delete(f"/api/v1/projects/{project.pk}/"), 403)
    made = developer.post("/api/v1/pipelines/", {"project": project.pk, "name": "Dev pipe"}, format="json")
    assert made.status_code == 201, made.content
    new_version = developer.post(f"/api/v1/pipelines/{made.json()['id']}/versions/", {"graph": graph()}, format="json")
    assert new_version.status_code == 201 and new_version.json()["author"] == "dev"
    stranger = api(outsider)
    assert_error(stranger.get(f"/api/v1/projects/{project.pk}/"), 404)
    assert_error(stranger.get(f"/api/v1/pipelines/{pipeline.pk}/"), 404)
    assert_error(stranger.get(f"/api/v1/pipelines/{pipeline.pk}/versions/"), 404)
    assert_error(stranger.post(f"/api/v1/pipelines/{pipeline.pk}/versions/", {"graph": graph()}, format="json"), 404)
    assert_error(stranger.post("/api/v1/pipelines/", {"project": project.pk, "name": "Intruder"}, format="json"), 400)
    assert stranger.get("/api/v1/projects/").json()["results"] == []
    assert stranger.get("/api/v1/pipelines/").json()["results"] == []
    assert not Project.objects.filter(name="Dev").exists()
    assert not Pipeline.objects.filter(name="Intruder").exists()
    assert PipelineVersion.objects.filter(pipeline=pipeline).count() == 1


def test_project_etag_if_match(api, org_admin, project):
    client = api(org_admin)
    first = client.get(f"/api/v1/projects/{project.pk}/")
    etag = first["ETag"]
    assert etag
    ok = client.patch(f"/api/v1/projects/{project.pk}/", {"description": "one"}, format="json", HTTP_IF_MATCH=etag)
    assert ok.status_code == 200, ok.content
    assert ok["ETag"] != etag
    stale = client.patch(f"/api/v1/projects/{project.pk}/", {"description": "two"}, format="json", HTTP_IF_MATCH=etag)
    assert_error(stale, 412, code="precondition_failed")
    assert client.get(f"/api/v1/projects/{project.pk}/").json()["description"] == "one"
    fresh = client.patch(
        f"/api/v1/projects/{project.pk}/", {"description": "three"}, format="json", HTTP_IF_MATCH=ok["ETag"]
    )
    assert fresh.status_code == 200


def test_pipeline_list_query_count_is_bounded(api, org_admin, project, django_assert_max_num_queries):
    for index in range(10):
        pipeline = services.pipeline_create(actor=org_admin, project=project, name=f"Pipeline {index}")
        services.pipeline_version_create(actor=org_admin, pipeline=pipeline, graph=graph())
    client = api(org_admin)
    with django_assert_max_num_queries(8):
        response = client.get("/api/v1/pipelines/")
    assert response.json()["count"] == 10
    assert {p["latest_version"] for p in response.json()["results"]} == {1}
    with django_assert_max_num_queries(8):
        assert client.get("/api/v1/projects/").json()["count"] == 1


def test_pipeline_list_is_ordered_by_project_and_name(api, org_admin, project):
    for name in ("Zeta", "Mu", "Alpha"):
        services.pipeline_create(actor=org_admin, project=project, name=name)
    names = [p["name"] for p in api(org_admin).get("/api/v1/pipelines/", {"page_size": 2}).json()["results"]]
    assert names == ["Alpha", "Mu"]
