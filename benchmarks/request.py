"""Benchmark of the authenticated request path: a trivial API view called with a Bearer API key
(key lookup, owner and organization, `last_used`, scope check, throttling, middleware) against the
same view with no authentication, permission or throttling (the floor), in the same process; and
the `resolve` API at 100 variables against a view returning the same payload through the same
authentication (its floor).

Run: make bench (in-process WSGI client, no network)."""

import os

from common import ratio, report, setup_django, timed

RESOLVE_VARIABLES = int(os.environ.get("BENCH_RESOLVE_VARIABLES", "100"))


def main():
    setup_django(urlconf="bench_urls")
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from resolution import build

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
    floor = timed(lambda: get("/bench/open-ping"))
    authed = timed(lambda: get("/bench/ping", **bearer))
    with CaptureQueriesContext(connection) as queries:
        get("/bench/ping", **bearer)
    rows.append(
        {
            "figure": "Bearer key, trivial view",
            "floor_ms": round(floor["median"] * 1000, 3),
            "measured_ms": round(authed["median"] * 1000, 3),
            "ratio": ratio(authed, floor),
            "queries": len(queries),
        }
    )
    resolve_url = f"/api/v1/pipelines/{pipeline.pk}/resolve/?environment={env.slug}"
    payload = get(resolve_url, **bearer).content

    import bench_urls  # the same payload behind the same authentication: the resolve API's floor
    from django.http import HttpResponse

    class Payload(bench_urls.Ping):
        def get(self, request):
            return HttpResponse(payload, content_type="application/json")

    from django.urls import clear_url_caches, path

    bench_urls.urlpatterns.insert(0, path("bench/payload", Payload.as_view()))
    clear_url_caches()
    payload_floor = timed(lambda: get("/bench/payload", **bearer))
    resolve = timed(lambda: get(resolve_url, **bearer))
    rows.append(
        {
            "figure": f"resolve API, {RESOLVE_VARIABLES} variables (warm cache)",
            "floor_ms": round(payload_floor["median"] * 1000, 3),
            "measured_ms": round(resolve["median"] * 1000, 3),
            "ratio": ratio(resolve, payload_floor),
            "queries": None,
        }
    )
    report(
        "request",
        "Authenticated request path vs its floor",
        rows,
        [("figure", "figure"), ("floor_ms", "floor ms"), ("measured_ms", "measured ms"), ("ratio", "ratio")],
    )


if __name__ == "__main__":
    main()
