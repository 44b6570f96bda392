"""Benchmark of `resolve` for 10 … 10,000 variables with overrides in one environment.

For each size it measures, in the same run and on the same database:
  floor  — a hand-written resolver: the same queries as the engine's live snapshot (all definition
           columns joined with this environment's overrides under the same scope filter; roles,
           bindings, secrets, policy, the configuration revision) through the driver, building the
           same `variables` dict (checked equal to resolve()["variables"]);
  cold   — resolve() with an empty cache (loading, layering, interpolation, bindings, graph);
  warm   — resolve() answered from the cache;
floor and cold timed in turns (common.interleaved), with the ratio of this process's CPU time too;
and the number of queries of a cold and a warm resolve.

Run: make bench  (SQLite in a temporary folder; BENCH_DATABASE_URL=postgres://... for PostgreSQL;
BENCH_SIZES=10,100 for a quicker run)."""

import json
import os

from common import REPEAT, bulk_variables, cpu_ratio, interleaved, ratio, report, setup_django, timed

SIZES = [int(s) for s in os.environ.get("BENCH_SIZES", "10,100,1000,10000").split(",")]
SCOPE_RANK = {"pipeline": 0, "project": 1, "organization": 2}


def build(size: int):
    """An organization with `size` org-scoped variables, each overridden in production."""
    from django.contrib.auth import get_user_model

    from apps.connections import services as connection_services
    from apps.environments import services as env_services
    from apps.pipelines import services as pipeline_services
    from apps.tenancy import services as tenancy_services

    user_model = get_user_model()
    admin, _ = user_model.objects.get_or_create(username="bench", defaults={"is_staff": True, "is_superuser": True})
    org = tenancy_services.organization_create(actor=admin, name=f"Bench {size}", slug=f"bench-{size}")
    env = env_services.environment_create(actor=admin, organization=org, name="Production", kind="production")
    project = pipeline_services.project_create(actor=admin, organization=org, name="P")
    pipeline = pipeline_services.pipeline_create(actor=admin, project=project, name="Pipe")
    bulk_variables(org, env, size, default="dev-", override="prod-")
    graph = {
        "nodes": [
            {"id": "src", "type": "source", "connection": "wh", "query": "SELECT * FROM {{ var_00000 }}"},
            {"id": "dst", "type": "destination", "connection": "wh", "table": "{{ var_00001 }}"},
        ],
        "edges": [["src", "dst"]],
    }
    pipeline_services.pipeline_version_create(actor=admin, pipeline=pipeline, graph=graph)
    role = connection_services.connection_role_create(actor=admin, organization=org, name="wh", kind="sqlite")
    connection_services.connection_binding_set(
        actor=admin,
        role=role,
        environment=env,
        params={"path": "{{ var_00000 }}.sqlite3"},  # relative to the environment's SQLite folder
    )
    return org, env, pipeline


def _decode(raw):
    return json.loads(raw) if isinstance(raw, str) else raw


def floor_resolve(org, env, pipeline) -> dict:
    """The least a resolver must do for the engine's answer's `variables`: the same queries, one dict."""
    from django.db import connection

    project_id, pipeline_id = pipeline.project_id, pipeline.pk
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT value FROM tenancy_configrevision WHERE organization_id = %s ORDER BY id DESC LIMIT 1", [org.pk]
        )
        cursor.fetchall()
        cursor.execute(
            "SELECT v.id, v.name, v.type, v.default_value, v.default_secret_id, v.project_id, v.pipeline_id, "
            "v.required_in, v.choices, v.regex, v.min_value, v.max_value, v.allow_runtime_override, "
            "o.id, o.value, o.secret_id FROM variables_variable v "
            "LEFT JOIN variables_variableoverride o ON o.variable_id = v.id AND o.environment_id = %s "
            "WHERE v.organization_id = %s AND ((v.project_id IS NULL AND v.pipeline_id IS NULL) "
            "OR (v.project_id = %s AND v.pipeline_id IS NULL) OR v.pipeline_id = %s)",
            [env.pk, org.pk, project_id, pipeline_id],
        )
        rows = cursor.fetchall()
        cursor.execute(
            "SELECT id, name, kind, project_id, required_in FROM connections_connectionrole "
            "WHERE organization_id = %s AND (project_id IS NULL OR project_id = %s)",
            [org.pk, project_id],
        )
        roles = [r[0] for r in cursor.fetchall()]
        if roles:
            marks = ", ".join(["%s"] * len(roles))
            cursor.execute(
                f"SELECT id, role_id, params, credential_id FROM connections_connectionbinding "  # noqa: S608
                f"WHERE environment_id = %s AND role_id IN ({marks})",
                [env.pk, *roles],
            )
            cursor.fetchall()
        cursor.execute("SELECT * FROM environments_runtimepolicy WHERE environment_id = %s", [env.pk])
        cursor.fetchall()
    chosen: dict[str, tuple] = {}
    for row in rows:
        scope = "pipeline" if row[6] else "project" if row[5] else "organization"
        rank = SCOPE_RANK[scope]
        # Overrides beat defaults; within each, the most specific scope wins.
        if row[13] is not None:
            key, source, value = (0, rank), f"override:{scope}", _decode(row[14])
        elif row[3] is not None:
            key, source, value = (1, rank), f"default:{scope}", _decode(row[3])
        else:
            key, source, value = (2, rank), "unset", None
        best = chosen.get(row[1])
        if best is None or key < best[0]:
            top = scope if best is None or rank < SCOPE_RANK[best[2]] else best[2]
            chosen[row[1]] = (key, row[2], top, source, value)
    return {
        name: {"type": vtype, "scope": scope, "source": source, "value": value, "secret": None}
        for name, (_key, vtype, scope, source, value) in sorted(chosen.items())
    }


def main():
    setup_django()
    from django.core.cache import cache
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from apps.resolution import engine

    rows = []
    for size in SIZES:
        org, env, pipeline = build(size)
        answer = engine.resolve(pipeline, env, use_cache=False)
        assert floor_resolve(org, env, pipeline) == answer["variables"], "the floor must build the same dict"

        def cold(pipeline=pipeline, env=env, size=size):
            cache.clear()
            answer = engine.resolve(pipeline, env)
            assert len(answer["variables"]) == size and not answer["errors"], answer["errors"][:3]

        pair = interleaved(
            {"floor": lambda org=org, env=env, pipeline=pipeline: floor_resolve(org, env, pipeline), "cold": cold}
        )
        floor, cold_s = pair["floor"], pair["cold"]
        cache.clear()
        with CaptureQueriesContext(connection) as queries:
            engine.resolve(pipeline, env)
        warm_s = timed(lambda pipeline=pipeline, env=env: engine.resolve(pipeline, env))
        with CaptureQueriesContext(connection) as warm_queries:
            engine.resolve(pipeline, env)
        rows.append(
            {
                "variables": size,
                "floor_ms": round(floor["median"] * 1000, 3),
                "cold_ms": round(cold_s["median"] * 1000, 3),
                "cold_min_max_ms": [round(cold_s["min"] * 1000, 3), round(cold_s["max"] * 1000, 3)],
                "warm_ms": round(warm_s["median"] * 1000, 3),
                "cold_over_floor": ratio(cold_s, floor),
                "cold_over_floor_cpu": cpu_ratio(cold_s, floor),
                "warm_over_floor": ratio(warm_s, floor),
                "cold_queries": len(queries),
                "warm_queries": len(warm_queries),
            }
        )
    report(
        "resolution",
        "resolve() vs an honest floor (same queries, same dict)",
        rows,
        [
            ("variables", "variables"),
            ("floor_ms", "floor ms"),
            ("cold_ms", "cold ms"),
            ("warm_ms", "warm ms"),
            ("cold_over_floor", "cold/floor"),
            ("cold_over_floor_cpu", "cpu"),
            ("warm_over_floor", "warm/floor"),
            ("cold_queries", "cold q"),
            ("warm_queries", "warm q"),
        ],
        repeat=REPEAT,
    )


if __name__ == "__main__":
    main()
