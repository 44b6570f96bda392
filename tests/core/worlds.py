"""Module-scoped worlds for the bad-input sweeps: built once per module, inside a transaction that is
rolled back when the module is done, so every case reads the same rows and nothing leaks."""

import contextlib

from django.contrib.auth import get_user_model
from django.db import transaction

from apps.environments.models import Kind
from apps.tenancy.models import Edition

GRAPH = {
    "nodes": [
        {"id": "src", "type": "source", "connection": "warehouse", "query": "SELECT 1 AS n"},
        {"id": "dst", "type": "destination", "connection": "warehouse", "table": "t", "mode": "replace"},
    ],
    "edges": [["src", "dst"]],
}


@contextlib.contextmanager
def rolled_back(django_db_blocker):
    """Database access for a module-scoped fixture, undone at the end."""
    with django_db_blocker.unblock(), transaction.atomic():
        yield
        transaction.set_rollback(True)


def acme(prefix: str) -> dict:
    """A superuser operator, the owner of organization `acme` (enterprise) with development → staging →
    production, and its Sales/Orders pipeline with version 1."""
    from apps.environments import services as env_services
    from apps.pipelines import services as pipeline_services
    from apps.tenancy import services as tenancy_services

    users = get_user_model().objects
    operator = users.create_superuser(f"{prefix}-operator", f"{prefix}-operator@example.com", "pw")
    owner = users.create_user(f"{prefix}-owner", f"{prefix}-owner@example.com", "pw", is_staff=True)
    org = tenancy_services.organization_create(
        actor=operator, name="Acme", slug="acme", edition=Edition.ENTERPRISE, max_environments=5, owner=owner
    )
    production = env_services.environment_create(actor=owner, organization=org, name="Production", kind=Kind.PRODUCTION)
    staging = env_services.environment_create(
        actor=owner, organization=org, name="Staging", kind=Kind.STAGING, promotes_to=production
    )
    development = env_services.environment_create(
        actor=owner, organization=org, name="Development", kind=Kind.DEVELOPMENT, promotes_to=staging, position=0
    )
    project = pipeline_services.project_create(actor=owner, organization=org, name="Sales")
    pipeline = pipeline_services.pipeline_create(actor=owner, project=project, name="Orders")
    version = pipeline_services.pipeline_version_create(actor=owner, pipeline=pipeline, graph=GRAPH)
    return {
        "operator": operator,
        "owner": owner,
        "org": org,
        "development": development,
        "staging": staging,
        "production": production,
        "project": project,
        "pipeline": pipeline,
        "version": version,
    }
