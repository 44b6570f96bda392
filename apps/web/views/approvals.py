"""The approver's screens: the inbox, a promotion request's page, deciding and cancelling."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect
from django.views.decorators.http import require_GET, require_POST

from apps.approvals import services as approvals
from apps.core.admin import add_domain_error
from apps.core.errors import DomainError, NotFound

from .. import presenters, selectors
from ..forms import (
    DecisionForm,
    InboxFilterForm,
)
from .base import screen


def _visible_request(user, pk: int):
    try:
        return approvals.request_for_user(user, pk)
    except NotFound as exc:
        raise Http404(exc.message) from exc


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
