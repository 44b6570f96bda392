"""The matrix and the stage diff show one page of variables: cells are built for the page's rows
only, the page says how many there are, and the queries do not grow with the rows shown."""

import pytest
from django.urls import reverse

from apps.variables.models import Variable, VariableOverride


def _variables(org, environment, count: int) -> None:
    """`count` more variables (bulk: their history is not what these tests are about)."""
    made = Variable.objects.bulk_create(
        [Variable(organization=org, name=f"v_{i:03d}", type="string", default_value=f"d{i}") for i in range(count)]
    )
    VariableOverride.objects.bulk_create(
        [VariableOverride(variable=v, environment=environment, value=f"o{i}") for i, v in enumerate(made)]
    )


def test_matrix_pages_rows_and_describes_the_page(configured, project, api, org_admin, org, stages):
    _variables(org, stages["staging"], 5)  # with db_schema: 6 rows
    client = api(org_admin)
    url = f"/api/v1/projects/{project.pk}/matrix/"
    first = client.get(url, {"page_size": 4}).json()
    assert list(first["variables"]) == ["db_schema", "v_000", "v_001", "v_002"]
    assert first["page"] == {"number": 1, "size": 4, "count": 6, "pages": 2}
    second = client.get(url, {"page_size": 4, "page": 2}).json()
    assert list(second["variables"]) == ["v_003", "v_004"]
    cells = {c["environment"]: (c["value"], c["source"]) for c in second["variables"]["v_003"]["cells"]}
    assert cells["staging"] == ("o3", "override:organization") and cells["production"] == ("d3", "default:organization")
    assert second["variables"]["v_003"]["differs"] is True
    assert list(first["connections"]) == list(second["connections"])  # roles are not paged
    assert client.get(url, {"page": 3, "page_size": 4}).json()["variables"] == {}
    missing = client.get(url).json()["variables"]["db_schema"]["cells"]
    assert [c["missing_required"] for c in missing] == [False, False, False]


@pytest.mark.parametrize("query", [{"page": "0"}, {"page": "x"}, {"page_size": "501"}, {"page_size": "0"}])
def test_matrix_and_diff_refuse_a_bad_page_naming_it(configured, project, pipeline, api, org_admin, query):
    client = api(org_admin)
    (name,) = query
    for url, base in (
        (f"/api/v1/projects/{project.pk}/matrix/", {}),
        (f"/api/v1/pipelines/{pipeline.pk}/diff/", {"from": "staging", "to": "production"}),
    ):
        response = client.get(url, {**base, **query})
        assert response.status_code == 400 and name in response.json()["error"]["fields"], response.content


def test_diff_pages_variables(configured, pipeline, api, org_admin, org, stages):
    _variables(org, stages["staging"], 3)
    url = f"/api/v1/pipelines/{pipeline.pk}/diff/"
    body = api(org_admin).get(url, {"from": "staging", "to": "production", "page_size": 2, "page": 2}).json()
    assert list(body["variables"]) == ["v_001", "v_002"]
    assert body["page"] == {"number": 2, "size": 2, "count": 4, "pages": 2}
    assert body["variables"]["v_001"] == {
        "left": "o1",
        "left_source": "override:organization",
        "right": "d1",
        "right_source": "default:organization",
        "differs": True,
    }


def _queries(client, url, params, django_assert_max_num_queries) -> int:
    client.get(url, params)  # warms the resolution cache, as a second look at the page would
    with django_assert_max_num_queries(100) as captured:
        response = client.get(url, params)
    assert response.status_code == 200
    return len(captured)


@pytest.mark.parametrize("surface", ["api", "diff", "page"])
def test_matrix_and_diff_queries_do_not_grow_from_1_to_50_rows(
    surface, configured, project, pipeline, api, client, org_admin, org, stages, django_assert_max_num_queries
):
    if surface == "page":
        client.force_login(org_admin)
        url, params = reverse("web:project-matrix", args=[project.pk]), {}
    elif surface == "api":
        client = api(org_admin)
        url, params = f"/api/v1/projects/{project.pk}/matrix/", {}
    else:
        client = api(org_admin)
        url, params = f"/api/v1/pipelines/{pipeline.pk}/diff/", {"from": "staging", "to": "production"}
    one = _queries(client, url, params, django_assert_max_num_queries)  # db_schema alone
    _variables(org, stages["staging"], 49)
    fifty = _queries(client, url, params, django_assert_max_num_queries)
    assert fifty == one and one <= 20, (one, fifty)


def test_matrix_page_links_its_pages(configured, project, client, org_admin, org, stages):
    _variables(org, stages["staging"], 120)
    client.force_login(org_admin)
    url = reverse("web:project-matrix", args=[project.pk])
    first = client.get(url).content.decode()
    assert "Page 1 of 2 (121 variables)" in first and 'href="?page=2"' in first
    assert "v_098" in first and "v_099" not in first
    second = client.get(url, {"page": "2"}).content.decode()
    assert "v_099" in second and "v_119" in second and 'href="?page=1"' in second
    assert "Page 1 of 2" in client.get(url, {"page": "²"}).content.decode()  # anything odd: page 1
