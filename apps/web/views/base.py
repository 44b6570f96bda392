"""What every screen shares: rendering with the navigation counts, and one form → service call."""

from django.shortcuts import render

from apps.core.admin import add_domain_error
from apps.core.errors import DomainError

from .. import selectors


def screen(request, template: str, context: dict, status: int = 200):
    """Render a screen with the navigation counts."""
    context["nav"] = selectors.navigation_counts(request.user)
    return render(request, template, context, status=status)


def submit(form, call, place_error=add_domain_error):
    """Validate `form` and call `call(cleaned_data)` (one service call). Returns (result, status):
    the result and 200, or None and 400 for bad input or the service's 4xx, its refusal put on the form."""
    if not form.is_valid():
        return None, 400
    try:
        return call(form.cleaned_data), 200
    except DomainError as exc:
        place_error(form, exc)
        return None, exc.status
