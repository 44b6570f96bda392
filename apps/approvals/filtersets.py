"""The query filters of approval rules and promotion requests: the API's lists and the approvals inbox
screen use the same definitions."""

from django.db.models import Q
from django_filters import rest_framework as filters

from apps.core.api import IdFilter
from apps.environments.models import Environment

from . import selectors
from .models import ApprovalRule, PromotionRequest, PromotionState, WatchState


class EnvironmentFilter(filters.CharFilter):
    """An environment by slug (an API parameter), or the environment row itself (a screen's choice:
    one person may see environments of the same slug in several organizations)."""

    def filter(self, qs, value):
        if isinstance(value, Environment):
            return qs.filter(**{self.field_name.removesuffix("__slug"): value})
        return super().filter(qs, value)


class RuleFilter(filters.FilterSet):
    organization = filters.CharFilter(field_name="organization__slug", help_text="Organization slug.")
    environment = filters.CharFilter(field_name="environment__slug", help_text="Target environment slug.")
    project = IdFilter(field_name="project_id", help_text="Project id.")
    organization_wide = filters.BooleanFilter(
        field_name="project", lookup_expr="isnull", help_text="Only organization-wide (true) or project (false) rules."
    )

    class Meta:
        model = ApprovalRule
        fields = ["organization", "environment", "project", "organization_wide", "is_active"]


class PromotionFilter(filters.FilterSet):
    state = filters.ChoiceFilter(choices=PromotionState.choices)
    pipeline = IdFilter(field_name="pipeline_id", help_text="Pipeline id.")
    project = IdFilter(field_name="pipeline__project_id", help_text="Project id.")
    source = EnvironmentFilter(field_name="source__slug", help_text="Source environment slug.")
    target = EnvironmentFilter(field_name="target__slug", help_text="Target environment slug.")
    awaiting_me = filters.BooleanFilter(
        method="filter_awaiting_me",
        help_text="Pending requests you may approve and have not yet decided against their current plan.",
    )
    mine = filters.BooleanFilter(method="filter_mine", help_text="Requests you made.")
    watch_state = filters.ChoiceFilter(choices=WatchState.choices[1:])

    class Meta:
        model = PromotionRequest
        fields = ["state", "pipeline", "project", "source", "target", "awaiting_me", "mine", "watch_state"]

    def filter_awaiting_me(self, queryset, name, value):
        awaiting = selectors.awaiting(self.request.user, queryset)
        return awaiting if value else queryset.exclude(pk__in=awaiting.values("pk"))

    def filter_mine(self, queryset, name, value):
        mine = Q(requested_by=self.request.user)
        return queryset.filter(mine) if value else queryset.exclude(mine)


_BY_ID = ("project", "pipeline")  # a screen's form gives the row; the filters take its id


def promotions_filtered(queryset, values: dict, request=None):
    """`queryset` narrowed by PromotionFilter's filters with values already cleaned by a screen's form
    (ids, an Environment row, a state); empty values do not filter."""
    filterset = PromotionFilter(queryset=queryset, request=request)
    for name, value in values.items():
        queryset = filterset.filters[name].filter(queryset, getattr(value, "pk", value) if name in _BY_ID else value)
    return queryset
