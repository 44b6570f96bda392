"""`/api/v1/audit/`: the web audit feed's rows for integrations — filters, visibility, no secret,
cursor pagination stable under inserts, CSV and JSON Lines export, bad parameters."""

import csv
import io
import json

import pytest

from apps.secrets import services as secret_services
from apps.tenancy import services as tenancy_services
from apps.tenancy.models import Edition
from apps.variables import services as variable_services

pytestmark = pytest.mark.django_db

CANARY = "audit-canary-Zq83vLw1"


@pytest.fixture
def changes(org, org_admin, stages, members, developer):
    """A handful of audited changes: variables, overrides in two stages and a secret."""
    made = []
    for index in range(6):
        variable = variable_services.variable_create(
            actor=org_admin, organization=org, name=f"var_{index}", type="string", default_value=f"v{index}"
        )
        made.append(variable)
    variable_services.variable_override_set(
        actor=org_admin, variable=made[0], environment=stages["production"], value="prod-value"
    )
    variable_services.variable_override_set(
        actor=developer, variable=made[1], environment=stages["development"], value="dev-value"
    )
    secret_services.secret_create(
        actor=org_admin,
        organization=org,
        name="warehouse_pw",
        value=CANARY,
        allowed_environments=[stages["production"]],
    )
    return made


def _all(client, url):
    entries, pages = [], 0
    while url:
        response = client.get(url)
        assert response.status_code == 200, response.content
        body = response.json()
        entries += body["results"]
        url = body["next"]
        pages += 1
    return entries, pages


def test_feed_lists_changes_newest_first_with_fields_before_after(api, org_admin, changes):
    response = api(org_admin).get("/api/v1/audit/", {"model": "variables.Variable"})
    assert response.status_code == 200
    results = response.json()["results"]
    assert [entry["name"] for entry in results][:2] == ["var_5", "var_4"]
    first = results[-1]
    assert first["what"] == "variable" and first["action"] == "created" and first["who"] == "orgadmin"
    assert first["organization"] == "Acme"
    assert {"field": "default_value", "before": "", "after": "v0"} in first["changes"]


def test_filters_environment_user_object_and_time(api, org_admin, developer, stages, changes):
    client = api(org_admin)
    production = client.get("/api/v1/audit/", {"environment": stages["production"].pk}).json()["results"]
    assert production and all(entry["environment"] == "production" for entry in production)
    assert any(entry["what"] == "variable override" for entry in production)

    by_developer = client.get("/api/v1/audit/", {"user": "dev"}).json()["results"]
    assert [entry["what"] for entry in by_developer] == ["variable override"]

    one = client.get("/api/v1/audit/", {"model": "variables.Variable", "object_id": changes[2].pk}).json()["results"]
    assert [entry["name"] for entry in one] == ["var_2"]

    every = client.get("/api/v1/audit/", {"page_size": 500}).json()["results"]
    middle = every[len(every) // 2]["when"]
    newer = client.get("/api/v1/audit/", {"since": middle, "page_size": 500}).json()["results"]
    older = client.get("/api/v1/audit/", {"until": middle, "page_size": 500}).json()["results"]
    assert len(newer) + len(older) == len(every)
    assert all(entry["when"] >= middle for entry in newer) and all(entry["when"] < middle for entry in older)


def test_only_what_the_caller_may_see(api, org_admin, developer, outsider, stages, changes, platform_staff):
    other = tenancy_services.organization_create(
        actor=platform_staff, name="Other", slug="other", edition=Edition.ENTERPRISE, owner=outsider
    )
    variable_services.variable_create(
        actor=outsider, organization=other, name="theirs", type="string", default_value="x"
    )

    developer_sees, _ = _all(api(developer), "/api/v1/audit/?page_size=500")
    environments = {entry["environment"] for entry in developer_sees if entry["environment"]}
    assert "production" not in environments  # no view right there
    assert not any(entry["what"] in ("secret", "API key", "membership") for entry in developer_sees)  # admins only
    assert not any(entry["organization"] == "Other" for entry in developer_sees)

    outsider_sees, _ = _all(api(outsider), "/api/v1/audit/?page_size=500")
    assert outsider_sees and all(entry["organization"] in ("Other", None) for entry in outsider_sees)
    # Another organization's filter values answer like missing ones.
    for params in ({"organization": "acme"}, {"environment": stages["production"].pk}):
        response = api(outsider).get("/api/v1/audit/", params)
        assert response.status_code == 400
        missing = api(outsider).get(
            "/api/v1/audit/", {"organization": "nope"} if "organization" in params else {"environment": 10**9}
        )
        assert response.json()["error"]["fields"] == missing.json()["error"]["fields"]

    assert api().get("/api/v1/audit/").status_code in (401, 403)


def test_no_secret_value_in_feed_or_exports(api, org_admin, changes):
    client = api(org_admin)
    bodies = [client.get("/api/v1/audit/", {"page_size": 500}).content]
    for kind in ("csv", "jsonl"):
        response = client.get("/api/v1/audit/export/", {"format": kind})
        bodies.append(b"".join(response.streaming_content))
    secret_rows = [e for e in json.loads(bodies[0])["results"] if e["what"] == "secret"]
    assert secret_rows, "the secret's creation is in the feed"
    for body in bodies:
        assert CANARY.encode() not in body


def test_cursor_pages_are_stable_under_inserts(api, org_admin, org, changes):
    client = api(org_admin)
    first = client.get("/api/v1/audit/", {"page_size": 3}).json()
    expected, _ = _all(client, "/api/v1/audit/?page_size=500")
    # New changes land while a reader pages through: the pages after the first neither repeat nor skip.
    for index in range(4):
        variable_services.variable_create(actor=org_admin, organization=org, name=f"late_{index}", type="string")
    rest, pages = _all(client, first["next"])
    seen = first["results"] + rest
    key = [(e["model"], e["history_id"]) for e in seen]
    assert key == [(e["model"], e["history_id"]) for e in expected]
    assert len(set(key)) == len(key) and pages >= 2


def test_exports_carry_every_matching_row(api, org_admin, changes, monkeypatch):
    from apps.audit import api as audit_api

    monkeypatch.setattr(audit_api, "EXPORT_CHUNK", 2)  # several chunks through the keyset
    client = api(org_admin)
    expected, _ = _all(client, "/api/v1/audit/?model=variables.Variable&page_size=500")

    response = client.get("/api/v1/audit/export/", {"format": "jsonl", "model": "variables.Variable"})
    assert response.status_code == 200 and response["Content-Type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
    assert [line["history_id"] for line in lines] == [e["history_id"] for e in expected]

    response = client.get("/api/v1/audit/export/", {"format": "csv", "model": "variables.Variable"})
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [int(row["history_id"]) for row in rows] == [e["history_id"] for e in expected]
    assert json.loads(rows[-1]["changes"])  # the field changes, as JSON in one cell


def test_csv_cells_cannot_start_a_formula(api, org_admin, org):
    variable_services.variable_create(
        actor=org_admin,
        organization=org,
        name="formula",
        type="string",
        description="=HYPERLINK(1)",
        default_value="=1+1",
    )
    response = api(org_admin).get("/api/v1/audit/export/", {"format": "csv", "model": "variables.Variable"})
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    cells = [cell for row in rows for cell in row]
    assert "'=HYPERLINK(1)" in " ".join(cells) or any(c.startswith("[") and "=HYPERLINK" in c for c in cells)
    assert not [cell for cell in cells if cell[:1] in ("=", "+", "-", "@")]


@pytest.mark.parametrize(
    "params",
    [
        {"model": "auth.User"},
        {"object_id": "5"},  # needs model
        {"object_id": "abc", "model": "variables.Variable"},
        {"environment": str(10**30)},
        {"since": "2026-13-45T99:99"},
        {"until": "nope"},
        {"cursor": "%%%"},
        {"cursor": "WyJ4Il0"},
        {"page_size": "0"},
        {"page_size": "501"},
        {"colour": "blue"},
    ],
)
def test_bad_parameters_are_400_naming_the_parameter(api, org_admin, changes, params):
    response = api(org_admin).get("/api/v1/audit/", params)
    assert response.status_code == 400, response.content
    fields = response.json()["error"]["fields"]
    assert set(fields) & (set(params) | {"object_id"})


def test_export_needs_a_known_format(api, org_admin, changes):
    response = api(org_admin).get("/api/v1/audit/export/", {"format": "xml"})
    assert response.status_code == 400
    assert "format" in response.json()["error"]["fields"]


def test_page_costs_a_fixed_number_of_queries(api, org_admin, org, changes, django_assert_max_num_queries):
    client = api(org_admin)
    client.get("/api/v1/audit/")  # warm the session and permission caches
    with django_assert_max_num_queries(20) as few:
        client.get("/api/v1/audit/", {"page_size": 5})
    for index in range(30):
        variable_services.variable_create(actor=org_admin, organization=org, name=f"more_{index}", type="string")
    with django_assert_max_num_queries(len(few.captured_queries)):
        client.get("/api/v1/audit/", {"page_size": 40})
