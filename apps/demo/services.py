"""Builds the demo organization through the same services the API and admin use. Idempotent."""

import random
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction

from apps.approvals import services as approval_services
from apps.approvals.models import ApprovalRule
from apps.connections import services as connection_services
from apps.connections.models import ConnectionBinding, ConnectionRole
from apps.connections.targets import sqlite_folder
from apps.environments import permissions as perms
from apps.environments import services as env_services
from apps.environments.models import Environment, Kind
from apps.pipelines import services as pipeline_services
from apps.pipelines.models import Pipeline, Project
from apps.runs import services as run_services
from apps.runs.models import Deployment, Schedule
from apps.secrets import services as secret_services
from apps.secrets.models import Secret
from apps.tenancy import services as tenancy_services
from apps.tenancy.models import Edition, Membership, Organization, Role
from apps.variables import services as variable_services
from apps.variables.models import Variable

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
    DemoUser("approver2", "approver2-pass", Role.MEMBER, "approves into staging and production"),
)

# Explicit grants beyond the development defaults every member gets.
GRANTS: dict[str, dict[str, tuple[str, ...]]] = {
    "dev": {
        "staging": (perms.VIEW, perms.REQUEST_PROMOTION, perms.RUN),
        "production": (perms.VIEW, perms.REQUEST_PROMOTION),
    },
    "approver1": {
        "staging": (perms.VIEW, perms.APPROVE_PROMOTION),
        "production": (perms.VIEW, perms.APPROVE_PROMOTION),
    },
    "approver2": {
        "staging": (perms.VIEW, perms.APPROVE_PROMOTION),
        "production": (perms.VIEW, perms.APPROVE_PROMOTION),
    },
}

# Organization-wide approval rules (self-approval is off by default: the requester never counts).
APPROVAL_RULES = {
    "staging": {"name": "staging review", "required_approvals": 1},
    "production": {
        "name": "production review",
        "required_approvals": 2,
        "require_validation": True,
        "validation_max_age_hours": 24,
        "allow_self_approval": False,
    },
}

STAGES: tuple[tuple[str, str, str, int, str | None, dict[str, Any]], ...] = (
    # slug, name, kind, position, promotes_to, policy overrides
    ("production", "Production", Kind.PRODUCTION, 30, None, {"allowed_destinations": ["reporting_db"]}),
    ("staging", "Staging", Kind.STAGING, 20, "production", {}),
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
    """Create (or complete) the demo organization, stages, users, grants, configuration and approval rules."""
    users = {spec.username: _user(spec) for spec in DEMO_USERS}
    admin = users["admin"]
    organization = Organization.objects.filter(slug=ORG_SLUG).first()
    if organization is None:
        organization = tenancy_services.organization_create(
            actor=admin, name="Acme Data", slug=ORG_SLUG, edition=Edition.ENTERPRISE, max_environments=10, owner=admin
        )
    stages: dict[str, Environment] = {}
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
                promotes_to=stages.get(promotes_to) if promotes_to else None,
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
    pipeline = _configuration(admin, organization, stages)
    _approval_rules(admin, stages)
    return {"organization": organization, "stages": stages, "users": users, "pipeline": pipeline}


DEMO_GRAPH = {
    "nodes": [
        {
            "id": "orders_src",
            "type": "source",
            "connection": "analytics_warehouse",
            "query": "SELECT order_id, customer_id, amount, created_at FROM {{ source_table }}",
        },
        {
            "id": "orders_out",
            "type": "destination",
            "connection": "reporting_db",
            "table": "{{ target_table }}",
            "mode": "replace",
            "key": ["order_id"],
        },
    ],
    "edges": [["orders_src", "orders_out"]],
}

# name, type, default, per-stage overrides, required in, runtime override allowed
DEMO_VARIABLES: tuple[tuple[str, str, Any, dict[str, Any], list[str], bool], ...] = (
    ("source_table", "string", "orders", {}, [], False),
    (
        "target_table",
        "string",
        "orders_mart_dev",
        {"staging": "orders_mart_stg", "production": "orders_mart"},
        ["production"],
        False,
    ),
    ("batch_size", "integer", 500, {"staging": 5000, "production": 20000}, [], True),
    ("enable_discounts", "boolean", True, {"production": False}, [], True),
)
SOURCE_ROWS = {"development": 200, "staging": 1000, "production": 1000}


def demo_database_path(environment, role: str) -> Path:
    """Where the demo keeps a stage's SQLite file: the environment's own folder (sqlite_folder)."""
    return sqlite_folder(environment) / f"{role}.sqlite3"


def _demo_warehouse(environment, stage: str) -> Path:
    """A small SQLite 'warehouse' with an orders table (same rows in staging and production, so a
    staging validation can be compared with a production baseline)."""
    path = demo_database_path(environment, "warehouse")
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(42)  # deterministic demo data, not security-sensitive
    rows = [
        (i, rng.randint(1, 300), round(rng.uniform(5, 500), 2), f"2026-11-{1 + i % 28:02d}")
        for i in range(1, SOURCE_ROWS[stage] + 1)
    ]
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS orders (order_id INTEGER PRIMARY KEY, customer_id INTEGER, amount REAL, "
            "created_at TEXT)"
        )
        conn.executemany("INSERT OR IGNORE INTO orders VALUES (?, ?, ?, ?)", rows)
    return path


def _configuration(admin, organization, stages):
    secret = Secret.objects.filter(organization=organization, name="reporting_password").first()
    if secret is None:
        secret = secret_services.secret_create(
            actor=admin,
            organization=organization,
            name="reporting_password",
            value="demo-" + "".join(random.choice("abcdefghjkmnpqrstuvwxyz23456789") for _ in range(20)),
            allowed_environments=[stages["staging"], stages["production"]],
            description="Demo credential of the reporting database (SQLite ignores it).",
        )
    project = Project.objects.filter(organization=organization, slug="sales").first()
    if project is None:
        project = pipeline_services.project_create(
            actor=admin,
            organization=organization,
            name="Sales",
            slug="sales",
            description="Order analytics.",
            default_environment=stages["development"],
        )
    pipeline = Pipeline.objects.filter(project=project, slug="orders-daily").first()
    if pipeline is None:
        pipeline = pipeline_services.pipeline_create(
            actor=admin,
            project=project,
            name="Orders daily",
            slug="orders-daily",
            description="Copies orders into the reporting mart.",
        )
        pipeline_services.pipeline_version_create(
            actor=admin,
            pipeline=pipeline,
            graph=DEMO_GRAPH,
            message="Initial version",
            git_repository="https://git.example.com/acme/pipelines",
            git_branch="main",
            git_commit="3f2a9c1",
        )
    for name, var_type, default, overrides, required_in, runtime in DEMO_VARIABLES:
        variable = Variable.objects.filter(organization=organization, project=project, name=name).first()
        if variable is None:
            variable = variable_services.variable_create(
                actor=admin,
                organization=organization,
                project=project,
                name=name,
                type=var_type,
                default_value=default,
                required_in=required_in,
                allow_runtime_override=runtime,
            )
        for stage, value in overrides.items():
            variable_services.variable_override_set(
                actor=admin, variable=variable, environment=stages[stage], value=value
            )
    for role_name, kind in (("analytics_warehouse", "sqlite"), ("reporting_db", "sqlite")):
        role = ConnectionRole.objects.filter(organization=organization, name=role_name).first()
        if role is None:
            role = connection_services.connection_role_create(
                actor=admin, organization=organization, name=role_name, kind=kind, required_in=["production"]
            )
        for slug, environment in stages.items():
            if role_name == "analytics_warehouse":
                path = _demo_warehouse(environment, slug)
            else:
                path = demo_database_path(environment, "reporting")
            if not ConnectionBinding.objects.filter(role=role, environment=environment).exists():
                connection_services.connection_binding_set(
                    actor=admin,
                    role=role,
                    environment=environment,
                    params={"path": path.name},
                    credential=secret if role_name == "reporting_db" and slug == "production" else None,
                )
    _deploy_and_schedule(admin, pipeline, stages["development"])
    return pipeline


def _deploy_and_schedule(admin, pipeline, development):
    """Version 1 deployed to development with a daily schedule (switched on by the deployment)."""
    if not Schedule.objects.filter(pipeline=pipeline, environment=development).exists():
        run_services.schedule_save(actor=admin, pipeline=pipeline, environment=development, cron="0 6 * * *")
    if not Deployment.objects.filter(pipeline=pipeline, environment=development, is_active=True).exists():
        run_services.deploy_direct(
            actor=admin,
            pipeline=pipeline,
            environment=development,
            version=pipeline.versions.order_by("number").first(),
        )


def _approval_rules(admin, stages):
    """Promotions into staging need one approval; into production two, and a passing staging run of
    the version from the last 24 hours. Rules that exist (by name) are left as they are."""
    for slug, fields in APPROVAL_RULES.items():
        environment = stages[slug]
        if not ApprovalRule.objects.filter(environment=environment, project__isnull=True, name=fields["name"]).exists():
            approval_services.rule_save(actor=admin, rule=ApprovalRule(environment=environment, **fields))
