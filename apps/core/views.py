"""Operational endpoints."""

from django.http import HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from . import health


@never_cache
@require_GET
def healthz(request):
    """Database and broker status; 503 when either is down. Worker freshness is reported but does
    not fail the check: a load balancer must not take web nodes out because workers lag."""
    db_ok, db_detail = health.check_database()
    broker_ok, broker_detail = health.check_broker()
    worker_ok, worker_detail = health.check_workers() if db_ok else (False, "database down")
    healthy = db_ok and broker_ok
    body = {
        "status": "ok" if healthy else "unavailable",
        "checks": {
            "database": {"ok": db_ok, "detail": db_detail},
            "broker": {"ok": broker_ok, "detail": broker_detail},
            "worker": {"ok": worker_ok, "detail": worker_detail},
        },
    }
    return JsonResponse(body, status=200 if healthy else 503)


def _wants_json(request) -> bool:
    return request.path.startswith("/api/") or "application/json" in request.headers.get("Accept", "")


def not_found(request, exception=None):
    """404 in the API's error shape for API paths; Django's page elsewhere."""
    if _wants_json(request):
        return JsonResponse({"error": {"code": "not_found", "message": "Not found."}}, status=404)
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)


def server_error(request):
    """500 without internals, quoting the request id."""
    from .middleware import request_id_var

    request_id = request_id_var.get()
    if _wants_json(request):
        return JsonResponse(
            {"error": {"code": "server_error", "message": f"Internal error. Quote request id {request_id}."}},
            status=500,
        )
    from django.views.defaults import server_error as django_server_error

    return django_server_error(request)


def locked_out(request, original_response=None, credentials=None):
    """django-axes' answer to a sign-in while the account or the address is locked out: a page (or,
    for API clients, the error shape) saying when to try again, with 429 and Retry-After."""
    from django.conf import settings
    from django.shortcuts import render

    seconds = int(settings.AXES_COOLOFF_TIME.total_seconds())
    minutes = max(1, -(-seconds // 60))
    message = (
        f"Too many failed sign-ins for this account or from this address. Try again in {minutes} "
        f"minute{'s' if minutes != 1 else ''}."
    )
    response: HttpResponse
    if _wants_json(request):
        response = JsonResponse({"error": {"code": "locked_out", "message": message}}, status=429)
    else:
        response = render(request, "locked_out.html", {"message": message, "minutes": minutes}, status=429)
    response["Retry-After"] = str(seconds)
    return response
