"""Builds the demo organization through the same services the API and admin use. Idempotent."""

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db import transaction

from apps.environments import permissions as perms
from apps.environments import services as env_services
from apps.environments.models import Environment, Kind
from apps.tenancy import services as tenancy_services
from apps.tenancy.models import Edition, Membership, Organization, Role

User = get_user_model()

ORG_SLUG = "acme"


@dataclass(frozen=True)
class DemoUser:
    username: str
    password: str
    role: str
    description: str


DEMO_USERS = (
    DemoUser("admin", "admin-pass", Role.OWNER, "superuser, owner of Acme Data"),
    DemoUser("dev", "dev-pass", Role.MEMBER, "developer: development rights, may request promotions"),
    DemoUser("approver1", "approver1-pass", Role.MEMBER, "approves into staging and production"),
    DemoUser("approver2", "approver2-pass", Role.MEMBER, "approves into production"),
)

# Explicit grants beyond the development defaults every member gets.
GRANTS = {
    "dev": {
        "staging": (perms.VIEW, perms.REQUEST_PROMOTION, perms.RUN),
        "production": (perms.VIEW, perms.REQUEST_PROMOTION),
    },
    "approver1": {"staging": (perms.VIEW, perms.APPROVE_PROMOTION), "production": (perms.VIEW, perms.APPROVE_PROMOTION)},
    "approver2": {"production": (perms.VIEW, perms.APPROVE_PROMOTION)},
}

STAGES = (
    # slug, name, kind, position, promotes_to, policy overrides
    ("production", "Production", Kind.PRODUCTION, 30, None, {"allowed_destinations": ["reporting_db"]}),
    ("staging", "Staging", Kind.STAGING, 20, "production", {"sample_percent": "25.00"}),
    ("development", "Development", Kind.DEVELOPMENT, 10, "staging", {"sample_rows": 1000}),
)


def _user(spec: DemoUser):
    user, created = User.objects.get_or_create(
        username=spec.username,
        defaults={"email": f"{spec.username}@acme.example", "is_staff": spec.username == "admin"},
    )
    if created:
        user.set_password(spec.password)
        if spec.username == "admin":
            user.is_superuser = True
        user.save()
    return user


@transaction.atomic
def seed_demo() -> dict:
    """Create (or complete) the demo organization, stages, users and grants."""
    users = {spec.username: _user(spec) for spec in DEMO_USERS}
    admin = users["admin"]
    organization = Organization.objects.filter(slug=ORG_SLUG).first()
    if organization is None:
        organization = tenancy_services.organization_create(
            actor=admin, name="Acme Data", slug=ORG_SLUG, edition=Edition.ENTERPRISE, max_environments=10, owner=admin
        )
    stages = {}
    for slug, name, kind, position, promotes_to, policy in STAGES:
        environment = Environment.objects.filter(organization=organization, slug=slug).first()
        if environment is None:
            environment = env_services.environment_create(
                actor=admin,
                organization=organization,
                name=name,
                slug=slug,
                kind=kind,
                position=position,
                promotes_to=stages.get(promotes_to),
                policy=policy,
            )
        stages[slug] = environment
    for spec in DEMO_USERS:
        if not Membership.objects.filter(organization=organization, user=users[spec.username]).exists():
            tenancy_services.membership_add(
                actor=admin, organization=organization, user=users[spec.username], role=spec.role
            )
    for username, per_stage in GRANTS.items():
        for slug, codenames in per_stage.items():
            for codename in codenames:
                env_services.permission_grant(
                    actor=admin, environment=stages[slug], codename=codename, user=users[username]
                )
    return {"organization": organization, "stages": stages, "users": users}
