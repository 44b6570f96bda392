"""The screens. Thin: parse a form, call a selector or a service, render. Objects the user may not
see answer 404; a service's refusal is shown on the form (with its 4xx status), never as a 500."""

import re

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from apps.approvals import services as approvals
from apps.core.admin import add_domain_error
from apps.core.errors import DomainError, NotFound
from apps.core.errors import PermissionDenied as DomainPermissionDenied
from apps.insights.delivery import DEFAULT_DAYS, delivery_insights
from apps.pipelines.selectors import pipelines_for, projects_for

from . import presenters, selectors
from .forms import AuditFilterForm, DecisionForm, InboxFilterForm, InsightsFilterForm, PromotionRequestForm

AUDIT_PAGE_SIZE = 50


def screen(request, template: str, context: dict, status: int = 200):
    """Render a screen with the navigation counts."""
    context["nav"] = selectors.navigation_counts(request.user)
    return render(request, template, context, status=status)


def _visible_request(user, pk: int):
    try:
        return approvals.request_for_user(user, pk)
    except NotFound as exc:
        raise Http404(exc.message) from exc


# --- approvals ------------------------------------------------------------------------------------------


@login_required
@require_GET
def inbox(request):
    form = InboxFilterForm(request.user, request.GET or None)
    filters = form.cleaned_data if form.is_bound and form.is_valid() else {}
    lists = selectors.inbox(request.user, filters) if not form.errors else {"awaiting": [], "mine": [], "decided": []}
    return screen(request, "web/inbox.html", {"form": form, **lists}, status=400 if form.errors else 200)


def _detail(request, promotion, form, status=200):
    context = presenters.request_page(request.user, promotion)
    return screen(request, "web/request_detail.html", {**context, "form": form}, status=status)


@login_required
@require_GET
def request_detail(request, pk: int):
    promotion = _visible_request(request.user, pk)
    return _detail(request, promotion, DecisionForm(initial={"plan_hash": promotion.plan_hash}))


@login_required
@require_POST
def request_decide(request, pk: int):
    promotion = _visible_request(request.user, pk)
    form = DecisionForm(request.POST)
    status = 400
    if form.is_valid():
        data = form.cleaned_data
        try:
            if data["decision"] == "approve":
                promotion = approvals.promotion_approve(
                    actor=request.user, request=promotion, comment=data["comment"], plan_hash=data["plan_hash"]
                )
            else:
                promotion = approvals.promotion_reject(actor=request.user, request=promotion, comment=data["comment"])
        except DomainError as exc:
            add_domain_error(form, exc)
            status = exc.status
        else:
            messages.success(request, f"You {data['decision']}d request #{promotion.pk}; it is now {promotion.state}.")
            return redirect("web:request-detail", pk=promotion.pk)
    return _detail(request, _visible_request(request.user, pk), form, status=status)


@login_required
@require_POST
def request_cancel(request, pk: int):
    promotion = _visible_request(request.user, pk)
    try:
        approvals.promotion_cancel(actor=request.user, request=promotion, comment=request.POST.get("comment", "")[:500])
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Request #{promotion.pk} cancelled.")
    return redirect("web:request-detail", pk=promotion.pk)


# --- projects, matrix, pipelines -----------------------------------------------------------------------------


@login_required
@require_GET
def projects(request):
    return screen(request, "web/projects.html", {"projects": selectors.visible_projects(request.user)})


@login_required
@require_GET
def project_matrix(request, pk: int):
    project = get_object_or_404(projects_for(request.user), pk=pk)
    raw_page = request.GET.get("page", "")  # like the audit page's paginator: anything odd is page 1
    page = int(raw_page) if re.fullmatch(r"[1-9][0-9]{0,8}", raw_page) else 1
    try:
        context = presenters.matrix_page(request.user, project, page=page)
    except DomainPermissionDenied as exc:
        raise DjangoPermissionDenied(exc.message) from exc
    return screen(request, "web/matrix.html", {"project": project, **context})


def _pipeline(request, pipeline, form, status=200):
    context = presenters.pipeline_page(request.user, pipeline)
    return screen(request, "web/pipeline.html", {**context, "form": form}, status=status)


@login_required
@require_GET
def pipeline_detail(request, pk: int):
    pipeline = get_object_or_404(pipelines_for(request.user), pk=pk)
    return _pipeline(request, pipeline, PromotionRequestForm(request.user, pipeline))


@login_required
@require_POST
def pipeline_promote(request, pk: int):
    pipeline = get_object_or_404(pipelines_for(request.user), pk=pk)
    form = PromotionRequestForm(request.user, pipeline, request.POST)
    status = 400
    if form.is_valid():
        data = form.cleaned_data
        try:
            promotion, created = approvals.promotion_request_create(
                actor=request.user,
                pipeline=pipeline,
                version=data["version"],
                source=data["source"],
                target=data["target"],
                reason=data["reason"],
                ticket=data["ticket"],
                attached_runs=list(data["attached_runs"]),
                idempotency_key=data["idempotency_key"],
            )
        except DomainError as exc:
            add_domain_error(form, exc)
            status = exc.status
        else:
            if created:
                messages.success(request, f"Promotion requested: #{promotion.pk} into {promotion.target.name}.")
            return redirect("web:request-detail", pk=promotion.pk)
    return _pipeline(request, pipeline, form, status=status)


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
