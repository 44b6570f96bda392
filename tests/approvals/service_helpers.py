"""Small builders for the service-level promotion tests: versions, runs, members, walking a version
through staging into production, changing a rule or an override, and the notifications a user got."""

import copy

from django.contrib.auth import get_user_model

from apps.approvals import services
from apps.approvals.models import PromotionState
from apps.environments import permissions as perms
from apps.environments import services as env_services
from apps.notifications.models import Notification
from apps.pipelines import services as pipeline_services
from apps.runs import services as run_services
from apps.runs.models import RunStatus
from apps.tenancy import services as tenancy_services
from apps.tenancy.models import Role
from apps.variables import services as variable_services
from apps.variables.models import Variable
from tests.runs.conftest import GRAPH

User = get_user_model()


def member(p, username: str, grants: dict | None = None, role: str = Role.MEMBER):
    """A new member of the organization holding `grants` ({environment key: [codenames]})."""
    user = User.objects.create_user(username, f"{username}@example.com", "pw")
    organization = p["development"].organization
    tenancy_services.membership_add(actor=p["org_admin"], organization=organization, user=user, role=role)
    for key, codenames in (grants or {}).items():
        for codename in codenames:
            env_services.permission_grant(actor=p["org_admin"], environment=p[key], codename=codename, user=user)
    perms.forget(user)
    return User.objects.get(pk=user.pk)


def changed_graph(marker: str = "v2") -> dict:
    """The runs fixture's graph with a different (equivalent) source query."""
    graph = copy.deepcopy(GRAPH)
    query = graph["nodes"][0]["query"]
    graph["nodes"][0]["query"] = query.replace(" ORDER BY", f" WHERE '{marker}' <> '' ORDER BY")
    return graph


def new_version(p, marker: str = "v2", actor=None, **git):
    return pipeline_services.pipeline_version_create(
        actor=actor or p["org_admin"], pipeline=p["pipeline"], graph=changed_graph(marker), message=marker, **git
    )


def run_ok(p, environment_key: str, version=None, actor=None):
    """Run a version in an environment synchronously and insist that it succeeded."""
    run = run_services.run_create(
        actor=actor or p["org_admin"], pipeline=p["pipeline"], environment=p[environment_key], version=version
    )
    run_services.run_execute(run.pk)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.error
    return run


def request(p, source: str = "development", version=None, actor=None, **kwargs):
    promotion, created = services.promotion_request_create(
        actor=actor or p["developer"],
        pipeline=p["pipeline"],
        version=version or p["version"],
        source=p[source],
        **kwargs,
    )
    assert created
    return promotion


def approve(promotion, *users):
    for user in users:
        promotion = services.promotion_approve(actor=user, request=promotion, comment=f"ok from {user.username}")
    return promotion


def execute(promotion):
    services.promotion_execute(promotion.pk)
    promotion.refresh_from_db()
    return promotion


def deploy_to_staging(p, version=None):
    """Request, approve and deploy a version into staging (running it in development first if needed)."""
    version = version or p["version"]
    if version.pk != p["version"].pk:
        run_ok(p, "development", version=version)
    promotion = approve(request(p, version=version), p["staging_approver"])
    promotion = execute(promotion)
    assert promotion.state == PromotionState.DEPLOYED, promotion.failure_reason
    return promotion


def production_request(p, version=None, **kwargs):
    """A pending request into production for a version deployed and validated in staging."""
    version = version or p["version"]
    deploy_to_staging(p, version)
    run_ok(p, "staging", version=version)
    return request(p, source="staging", version=version, **kwargs)


def deploy_to_production(p, version=None):
    promotion = approve(production_request(p, version), p["prod_approver"], p["prod_approver2"])
    assert promotion.state == PromotionState.APPROVED
    promotion = execute(promotion)
    assert promotion.state == PromotionState.DEPLOYED, promotion.failure_reason
    return promotion


def notified(user, event) -> list[Notification]:
    return list(Notification.objects.filter(user=user, event=event))


def set_rule(p, key, **fields):
    rule = p[key]
    for name, value in fields.items():
        setattr(rule, name, value)
    return services.rule_save(actor=p["org_admin"], rule=rule)


def set_override(p, environment_key, name, value):
    variable = Variable.objects.get(name=name, project__isnull=True)
    return variable_services.variable_override_set(
        actor=p["org_admin"], variable=variable, environment=p[environment_key], value=value
    )


SECRET_VALUE = "s3cr3t-VALUE-never-shown-9f2c"  # the canary: never in a plan, page or error
