"""Reads for the screens, each filtered by the permission door and costing a fixed number of
queries whatever the number of rows: the inbox lists, the navigation counts and the audit feed."""

from django.db.models import QuerySet

from apps.approvals import selectors as approval_selectors
from apps.approvals.filtersets import promotions_filtered
from apps.approvals.models import OPEN_STATES, PromotionState
from apps.audit.selectors import AUDIT_MODEL_CHOICES, audit_entries, audit_filter_choices, audit_rows  # noqa: F401
from apps.core.models import without_blobs

INBOX_LIMIT = 50
RECENT_LIMIT = 20


# --- approvals inbox ---------------------------------------------------------------------------------------


def inbox(user, filters: dict) -> dict:
    """Awaiting me, my requests and recently decided ones, narrowed by the inbox filters."""
    base = promotions_filtered(without_blobs(approval_selectors.promotions_for(user)), filters)
    decided = base.exclude(state=PromotionState.PENDING).filter(decided_at__isnull=False).order_by("-decided_at", "-id")
    return {
        "awaiting": list(approval_selectors.awaiting(user, base)[:INBOX_LIMIT]),
        "mine": list(base.filter(requested_by=user)[:INBOX_LIMIT]),
        "decided": list(decided[:RECENT_LIMIT]),
    }


def navigation_counts(user) -> dict:
    """What the navigation shows beside 'Inbox': requests awaiting the user, and their own open ones."""
    if not user.is_authenticated:
        return {"awaiting": 0, "mine_open": 0}
    visible = approval_selectors.promotions_for(user).order_by()
    return {
        "awaiting": approval_selectors.awaiting(user, visible).count(),
        "mine_open": visible.filter(requested_by=user, state__in=OPEN_STATES).count(),
    }


def visible_projects(user) -> QuerySet:
    from apps.pipelines.selectors import projects_for

    return projects_for(user).prefetch_related("pipelines").order_by("organization__name", "name")


# --- run dialog ----------------------------------------------------------------------------------------------


def pipeline_variables(user, pipeline) -> list:
    """The variables of `pipeline` the user may see: per name, the most specific definition (pipeline,
    then project, then organization, as resolution layers them), sorted by name."""
    from django.db.models import Q

    from apps.variables.models import Variable
    from apps.variables.selectors import variables_for

    definitions = (
        variables_for(user)
        .filter(organization_id=pipeline.project.organization_id)
        .filter(
            Q(pipeline=pipeline)
            | Q(pipeline__isnull=True, project=pipeline.project)
            | Q(pipeline__isnull=True, project__isnull=True)
        )
    )
    most_specific: dict[str, Variable] = {}
    for variable in sorted(definitions, key=lambda v: (v.pipeline_id is None, v.project_id is None, v.name)):
        most_specific.setdefault(variable.name, variable)
    return [v for _name, v in sorted(most_specific.items())]


def runtime_parameters(variables: list) -> list:
    """Of a pipeline's variables (`pipeline_variables`), those a run may take as run-time parameters:
    the ones that allow run-time overrides and are not secrets. Whether the chosen stage's policy
    allows them is the resolution engine's answer when the run is started."""
    from apps.variables.models import VariableType

    return [v for v in variables if v.allow_runtime_override and v.type != VariableType.SECRET]
