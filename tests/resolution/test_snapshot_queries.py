"""The snapshot's queries sort nothing: Meta.ordering would add ORDER BY (and a JOIN of the
organization) to rows the engine sorts itself."""

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.resolution import engine
from tests.runs.conftest import run_setup  # noqa: F401  (fixture)

SNAPSHOT_TABLES = ("variables_", "connections_", "secrets_")


def _snapshot_queries(**kwargs) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        answer = engine.resolve(use_cache=False, **kwargs)
    assert answer["variables"]
    return [q["sql"] for q in captured.captured_queries if any(f'"{t}' in q["sql"] for t in SNAPSHOT_TABLES)]


def test_live_and_as_of_snapshots_have_no_order_by(run_setup, stages):  # noqa: F811
    pipeline, environment = run_setup["pipeline"], stages["staging"]
    for queries in (
        _snapshot_queries(pipeline=pipeline, environment=environment),
        _snapshot_queries(pipeline=pipeline, environment=environment, as_of=timezone.now()),
    ):
        assert queries
        for sql in queries:
            outer = sql.rsplit(")", 1)[-1]  # as_of's subqueries may order; the outer query must not
            assert "ORDER BY" not in outer and "tenancy_organization" not in sql, sql[:400]


def test_the_snapshot_is_cached_under_the_revision(run_setup, stages, org_admin):  # noqa: F811
    from apps.pipelines import services as pipeline_services
    from apps.variables import services as variable_services
    from tests.runs.conftest import GRAPH

    pipeline, environment = run_setup["pipeline"], stages["staging"]
    engine.resolve(pipeline, environment)
    graph = {**GRAPH, "nodes": [{**GRAPH["nodes"][0], "query": "SELECT 1 FROM {{ source_table }}"}, GRAPH["nodes"][1]]}
    second = pipeline_services.pipeline_version_create(actor=org_admin, pipeline=pipeline, graph=graph)
    with CaptureQueriesContext(connection) as captured:
        answer = engine.resolve(pipeline, environment, version=second)
    assert answer["graph"]["nodes"][0]["query"] == "SELECT 1 FROM orders"
    assert not [q for q in captured.captured_queries if '"variables_' in q["sql"]]
    variable = run_setup["pipeline"].project.organization.variables.get(name="source_table")
    variable_services.variable_override_set(actor=org_admin, variable=variable, environment=environment, value="x")
    assert engine.resolve(pipeline, environment, version=second)["variables"]["source_table"]["value"] == "x"


def test_a_cached_snapshot_is_the_snapshot_it_was(run_setup, stages, org_admin):  # noqa: F811
    """The snapshot pickles as plain tuples (see Snapshot.__getstate__): what comes back is equal,
    record for record."""
    import pickle

    from apps.resolution.snapshot import load_live
    from apps.variables import services as variable_services

    pipeline, environment = run_setup["pipeline"], stages["staging"]
    variable = pipeline.project.organization.variables.get(name="source_table")
    variable_services.variable_override_set(actor=org_admin, variable=variable, environment=environment, value="x")
    snap = load_live(
        organization_id=environment.organization_id,
        project_id=pipeline.project_id,
        pipeline_id=pipeline.pk,
        environment=environment,
    )
    assert snap.definitions and snap.overrides and snap.bindings
    again = pickle.loads(pickle.dumps(snap))  # noqa: S301 (our own bytes, as the cache does)
    assert again == snap
    assert [d.scope for d in again.definitions] == [d.scope for d in snap.definitions]
