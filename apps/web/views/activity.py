"""The audit feed and delivery insights screens."""

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.views.decorators.http import require_GET

from apps.insights.delivery import DEFAULT_DAYS, delivery_insights

from .. import presenters, selectors
from ..forms import (
    AuditFilterForm,
    InsightsFilterForm,
)
from .base import screen

AUDIT_PAGE_SIZE = 50

# --- audit ----------------------------------------------------------------------------------------------------


@login_required
@require_GET
def audit(request):
    form = AuditFilterForm(request.user, request.GET or None)
    if form.is_bound and not form.is_valid():
        return screen(request, "web/audit.html", {"form": form, "entries": [], "page": None}, status=400)
    filters = form.cleaned_data if form.is_bound else {}
    paginator = Paginator(selectors.audit_rows(request.user, filters), AUDIT_PAGE_SIZE)
    page = paginator.get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {"form": form, "page": page, "entries": selectors.audit_entries(list(page.object_list))}
    return screen(request, "web/audit.html", {**context, "query": query.urlencode()})


# --- delivery insights ----------------------------------------------------------------------------------------


@login_required
@require_GET
def insights(request):
    form = InsightsFilterForm(request.GET or None)
    if form.is_bound and not form.is_valid():
        return screen(request, "web/insights.html", {"form": form, "pipelines": []}, status=400)
    days = (form.cleaned_data.get("days") if form.is_bound else None) or DEFAULT_DAYS
    pairs = delivery_insights(request.user, days=days)
    return screen(request, "web/insights.html", {"form": form, "days": days, "pipelines": presenters.insights(pairs)})
