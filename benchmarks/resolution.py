"""Benchmark of `resolve` for 10 … 10,000 variables with overrides in one environment.

For each size it measures, in the same run and on the same database:
  floor  — one hand-written SQL query through the driver fetching the same rows (definitions
           joined with this environment's overrides), the least any resolver must do;
  cold   — resolve() with an empty cache (loading, layering, interpolation, bindings, graph);
  warm   — resolve() answered from the cache (one query for the configuration revision);
and the number of queries of a cold resolve. Prints a table and writes results/resolution.json.

Run: make bench  (SQLite in a temporary folder; set BENCH_DATABASE_URL=postgres://... to use an
existing empty PostgreSQL database instead)."""

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SIZES = [int(s) for s in os.environ.get("BENCH_SIZES", "10,100,1000,10000").split(",")]
REPEAT = int(os.environ.get("BENCH_REPEAT", "7"))


def setup_django():
    tmp = Path(tempfile.mkdtemp(prefix="planasonix-bench-"))
    os.environ["PLANASONIX_VAR_DIR"] = str(tmp)
    os.environ["DATABASE_URL"] = os.environ.get("BENCH_DATABASE_URL", f"sqlite:///{tmp / 'bench.sqlite3'}")
    os.environ.setdefault("CACHE_URL", "locmemcache://bench")
    os.environ["DJANGO_SETTINGS_MODULE"] = "planasonix_env.settings"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def build(size: int):
    """An organization with `size` org-scoped variables, each overridden in production."""
    from django.contrib.auth import get_user_model

    from apps.connections import services as connection_services
    from apps.environments import services as env_services
    from apps.pipelines import services as pipeline_services
    from apps.tenancy import services as tenancy_services
    from apps.variables.models import Variable, VariableOverride

    user_model = get_user_model()
    admin, _ = user_model.objects.get_or_create(username="bench", defaults={"is_staff": True, "is_superuser": True})
    org = tenancy_services.organization_create(actor=admin, name=f"Bench {size}", slug=f"bench-{size}")
    env = env_services.environment_create(actor=admin, organization=org, name="Production", kind="production")
    project = pipeline_services.project_create(actor=admin, organization=org, name="P")
    pipeline = pipeline_services.pipeline_create(actor=admin, project=project, name="Pipe")
    # Bulk set-up of benchmark fixtures: history rows are irrelevant to what is measured.
    variables = Variable.objects.bulk_create(
        [Variable(organization=org, name=f"var_{i:05d}", type="string", default_value=f"dev-{i}") for i in range(size)],
        batch_size=1000,
    )
    VariableOverride.objects.bulk_create(
        [VariableOverride(variable=v, environment=env, value=f"prod-{i}") for i, v in enumerate(variables)],
        batch_size=1000,
    )
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


def floor_query(org, env):
    from django.db import connection

    sql = (
        "SELECT v.id, v.name, v.type, v.default_value, o.value FROM variables_variable v "
        "LEFT JOIN variables_variableoverride o ON o.variable_id = v.id AND o.environment_id = %s "
        "WHERE v.organization_id = %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [env.pk, org.pk])
        return cursor.fetchall()


def timed(func, repeat=REPEAT):
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main():
    setup_django()
    from django.core.cache import cache
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from apps.resolution import engine

    rows = []
    for size in SIZES:
        org, env, pipeline = build(size)
        assert len(floor_query(org, env)) == size
        floor = timed(lambda org=org, env=env: floor_query(org, env))

        def cold(pipeline=pipeline, env=env, size=size):
            cache.clear()
            answer = engine.resolve(pipeline, env)
            assert len(answer["variables"]) == size and not answer["errors"], answer["errors"][:3]

        cold_s = timed(cold)
        cache.clear()
        with CaptureQueriesContext(connection) as queries:
            engine.resolve(pipeline, env)
        engine.resolve(pipeline, env)
        warm_s = timed(lambda pipeline=pipeline, env=env: engine.resolve(pipeline, env))
        with CaptureQueriesContext(connection) as warm_queries:
            engine.resolve(pipeline, env)
        rows.append(
            {
                "variables": size,
                "floor_ms": round(floor * 1000, 3),
                "cold_ms": round(cold_s * 1000, 3),
                "warm_ms": round(warm_s * 1000, 3),
                "cold_over_floor": round(cold_s / floor, 2),
                "warm_over_cold": round(warm_s / cold_s, 4),
                "cold_queries": len(queries),
                "warm_queries": len(warm_queries),
            }
        )
    vendor = connection.vendor
    header = (
        f"{'variables':>9} {'floor ms':>9} {'cold ms':>9} {'warm ms':>9} {'cold/floor':>10} {'warm/cold':>9} "
        f"{'queries':>7}"
    )
    print(f"resolve() benchmark on {vendor}, median of {REPEAT}")
    print(header)
    for r in rows:
        print(
            f"{r['variables']:>9} {r['floor_ms']:>9.3f} {r['cold_ms']:>9.3f} {r['warm_ms']:>9.3f} "
            f"{r['cold_over_floor']:>10.2f} {r['warm_over_cold']:>9.4f} {r['cold_queries']:>4}/{r['warm_queries']}"
        )
    out = ROOT / "benchmarks" / "results" / "resolution.json"
    out.write_text(json.dumps({"database": vendor, "repeat": REPEAT, "rows": rows}, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
