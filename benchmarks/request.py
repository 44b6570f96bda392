"""Benchmark of the authenticated request path: a trivial API view called with a Bearer API key
(key lookup, owner and organization, `last_used`, scope check, throttling, middleware) against the
same view with no authentication, permission or throttling (the floor), in the same process; and
the `resolve` API at 100 variables against a view returning the same payload through the same
authentication (its floor); and the `resolve` API at 10,000 variables with an empty cache against
the same authenticated view running the honest floor resolver of benchmarks/resolution.py (the same
queries, the same `variables` dict, rendered the same way).

Subject and floor are timed in turns (common.interleaved), so both see the same load. Each figure
is a ratio of medians of wall time and, in the "cpu" column, of this process's CPU time
(which does not count waiting for a core, nor the database server's work): on a shared, loaded
machine each database round trip waits for the scheduler, and the wall-time ratio of a request
with one query to one with none says more about the load than about the code.

Run: make bench (in-process WSGI client, no network)."""

import os

from common import REPEAT, cpu_ratio, interleaved, ratio, report, setup_django

RESOLVE_VARIABLES = int(os.environ.get("BENCH_RESOLVE_VARIABLES", "100"))
COLD_VARIABLES = int(os.environ.get("BENCH_COLD_RESOLVE_VARIABLES", "10000"))
REQUEST_REPEAT = int(os.environ.get("BENCH_REQUEST_REPEAT", "101"))  # a request is short: more samples


def row(figure: str, measured: dict, floor: dict, queries=None) -> dict:
    return {
        "figure": figure,
        "floor_ms": round(floor["median"] * 1000, 3),
        "measured_ms": round(measured["median"] * 1000, 3),
        "floor_cpu_ms": round(floor["cpu"] * 1000, 3),
        "measured_cpu_ms": round(measured["cpu"] * 1000, 3),
        "ratio": ratio(measured, floor),
        "cpu_ratio": cpu_ratio(measured, floor),
        "queries": queries,
    }


def main():
    setup_django(urlconf="bench_urls")
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from resolution import build, floor_resolve

    from apps.tenancy import services as tenancy_services

    org, env, pipeline = build(RESOLVE_VARIABLES)
    from django.contrib.auth import get_user_model

    admin = get_user_model().objects.get(username="bench")
    if not org.memberships.filter(user=admin).exists():
        tenancy_services.membership_add(actor=admin, organization=org, user=admin, role="owner")
    _key, token = tenancy_services.api_key_create(
        actor=admin, organization=org, name="bench", scopes=["read"], owner=admin
    )
    client = Client()
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {token}"}

    def get(url, **headers):
        response = client.get(url, **headers)
        assert response.status_code == 200, (url, response.status_code, response.content[:300])
        return response

    rows = []
    pair = interleaved(
        {"floor": lambda: get("/bench/open-ping"), "authed": lambda: get("/bench/ping", **bearer)}, REQUEST_REPEAT
    )
    floor, authed = pair["floor"], pair["authed"]
    with CaptureQueriesContext(connection) as queries:
        get("/bench/ping", **bearer)
    rows.append(row("Bearer key, trivial view", authed, floor, len(queries)))
    resolve_url = f"/api/v1/pipelines/{pipeline.pk}/resolve/?environment={env.slug}"
    payload = get(resolve_url, **bearer).content

    import bench_urls  # the same payload behind the same authentication: the resolve API's floor
    from django.core.cache import cache
    from django.http import HttpResponse
    from rest_framework.response import Response

    class Payload(bench_urls.Ping):
        def get(self, request):
            return HttpResponse(payload, content_type="application/json")

    big_org, big_env, big_pipeline = build(COLD_VARIABLES)
    if not big_org.memberships.filter(user=admin).exists():
        tenancy_services.membership_add(actor=admin, organization=big_org, user=admin, role="owner")
    _big_key, big_token = tenancy_services.api_key_create(
        actor=admin, organization=big_org, name="bench", scopes=["read"], owner=admin
    )
    big_bearer = {"HTTP_AUTHORIZATION": f"Bearer {big_token}"}

    class FloorResolve(bench_urls.Ping):
        def get(self, request):
            return Response({"variables": floor_resolve(big_org, big_env, big_pipeline)})

    from django.urls import clear_url_caches, path

    bench_urls.urlpatterns[:0] = [path("bench/payload", Payload.as_view()), path("bench/floor", FloorResolve.as_view())]
    clear_url_caches()
    pair = interleaved(
        {"floor": lambda: get("/bench/payload", **bearer), "resolve": lambda: get(resolve_url, **bearer)},
        REQUEST_REPEAT,
    )
    payload_floor, resolve = pair["floor"], pair["resolve"]
    rows.append(row(f"resolve API, {RESOLVE_VARIABLES} variables (warm cache)", resolve, payload_floor))

    big_url = f"/api/v1/pipelines/{big_pipeline.pk}/resolve/?environment={big_env.slug}"
    answered = get(big_url, **big_bearer).json()["variables"]
    assert answered == get("/bench/floor", **big_bearer).json()["variables"], "the floor must answer the same"

    def cold(url):
        cache.clear()  # the answer and the snapshot (and the throttle's window, for both alike)
        get(url, **big_bearer)

    pair = interleaved({"floor": lambda: cold("/bench/floor"), "resolve": lambda: cold(big_url)})
    cold_floor, cold_resolve = pair["floor"], pair["resolve"]
    rows.append(row(f"resolve API, {COLD_VARIABLES} variables, empty cache", cold_resolve, cold_floor))
    report(
        "request",
        "Authenticated request path vs its floor",
        rows,
        [
            ("figure", "figure"),
            ("floor_ms", "floor ms"),
            ("measured_ms", "measured ms"),
            ("ratio", "ratio"),
            ("cpu_ratio", "cpu ratio"),
            ("floor_cpu_ms", "floor cpu ms"),
            ("measured_cpu_ms", "cpu ms"),
        ],
        repeat=f"{REQUEST_REPEAT} (the empty-cache figure: {REPEAT})",
    )


if __name__ == "__main__":
    main()
