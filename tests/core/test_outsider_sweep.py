"""The outsider sweep (after NetBox's): every operation of the OpenAPI schema, called with the real
ids of a populated organization by the owner of *another* organization and by an anonymous client.

- Anonymous: 401 or 403, always.
- The outsider: an operation on one of the organization's objects (ids in the path) is a 404 (or a
  403); a list answers without naming anything of the organization; a create is refused.
- Both: nothing is written (the row count of every table is compared before and after).
- A related id of the other organization in a request body gets the same status and message as an
  id that does not exist, for every writable related field (the existence oracle), and every
  writable related field of every input serializer looks its ids up through the visibility door.

The world (the demo organization plus one of every object the API addresses, and the outsider's
own organization) is built once per module inside a transaction that is rolled back at the end;
each test runs in a savepoint of its own."""

import re
from dataclasses import dataclass

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser, Group
from django.db import connection, transaction
from django.test import override_settings
from drf_spectacular.generators import SchemaGenerator
from rest_framework import serializers
from rest_framework.test import APIClient

from apps.approvals import services as approval_services
from apps.connections import services as connection_services
from apps.core.api import VisibleRelatedField
from apps.demo.services import seed_demo
from apps.environments import services as env_services
from apps.environments.models import FreezeKind, Kind
from apps.notifications import services as notification_services
from apps.notifications.models import ChannelKind, Event, Notification
from apps.runs import services as run_services
from apps.tenancy import services as tenancy_services
from apps.tenancy.models import Edition, Organization

User = get_user_model()

SCHEMA = SchemaGenerator().get_schema(request=None, public=True)
METHODS = ("get", "post", "put", "patch", "delete")
OPERATIONS = [(method, path) for path, item in SCHEMA["paths"].items() for method in METHODS if method in item]
ACME_MARKERS = ("acme", "orders-daily", "Acme Data")  # the organization's slug, pipeline slug, name
MISSING_ID = 987654321
# Authenticated by a provider's signature or token, not a user: 401 for anyone without one.
SIGNED_PATHS = {"/api/v1/repositories/{id}/webhook/", "/api/v1/triggers/hooks/{token}/"}


@dataclass
class World:
    ids: dict  # path collection -> id of one of acme's objects there
    values: dict  # request-body field name -> an acme value
    outsider: object
    outsider_org: object
    outsider_env: object
    outsider_project: object
    outsider_pipeline: object


def _build_world() -> World:
    demo = seed_demo()
    acme, stages, admin, pipeline = demo["organization"], demo["stages"], demo["users"]["admin"], demo["pipeline"]
    project = pipeline.project
    version = pipeline.versions.order_by("number").first()
    channel, _ = notification_services.channel_create(
        actor=admin, organization=acme, name="ops", kind=ChannelKind.EMAIL, target="ops@example.com"
    )
    window = env_services.freeze_window_create(
        actor=admin,
        environment=stages["production"],
        kind=FreezeKind.RECURRING,
        cron="0 22 * * 5",
        duration_minutes=60,
        timezone="UTC",
        reason="weekend",
    )
    notification_services.emit(
        Event.RUN_FAILED, {"environment": "production"}, organization=acme, channels=[channel], users=[admin]
    )
    connection_services.connection_test_request(actor=admin, binding=stages["production"].connection_bindings.first())
    env_services.permission_grant(
        actor=admin,
        environment=stages["staging"],
        codename="approve_promotion",
        group=Group.objects.create(name="sweep-approvers"),
    )
    account = tenancy_services.service_account_create(actor=admin, organization=acme, name="ci")
    key, _ = tenancy_services.api_key_create(actor=admin, organization=acme, name="ci", scopes=["read"])
    run = run_services.run_create(actor=admin, pipeline=pipeline, environment=stages["development"])
    from apps.variables import services as variable_services

    personal = variable_services.personal_override_set(
        actor=admin, variable=acme.variables.get(name="source_table"), environment=stages["development"], value="mine"
    )
    promotion, _ = approval_services.promotion_request_create(
        actor=admin, pipeline=pipeline, version=version, source=stages["development"], target=stages["staging"]
    )
    from apps.repositories import services as repository_services
    from apps.repositories.models import VersionSource, WebhookDelivery

    repository = repository_services.repository_create(
        actor=admin, pipeline=pipeline, clone_url="file:///srv/git/orders.git", definition_path="orders.yaml"
    )
    WebhookDelivery.objects.create(repository=repository, provider="github", delivery_id="d-1", event="push")
    from apps.runs.models import TriggerFire

    hook = run_services.trigger_create(
        actor=admin,
        pipeline=pipeline,
        environment=stages["development"],
        kind="webhook",
        signing_secret=acme.secrets.first(),
    )
    TriggerFire.objects.create(trigger=hook, delivery="d-1", run=run)
    VersionSource.objects.create(version=version, repository=repository, commit="a" * 40)
    outsider = User.objects.create_user("sweep-outsider", "outsider@globex.example", "pw")
    globex = tenancy_services.organization_create(
        actor=admin, name="Globex", slug="globex", edition=Edition.ENTERPRISE, max_environments=5, owner=outsider
    )
    globex_env = env_services.environment_create(
        actor=outsider, organization=globex, name="Development", kind=Kind.DEVELOPMENT
    )
    from apps.pipelines import services as pipeline_services

    globex_project = pipeline_services.project_create(actor=outsider, organization=globex, name="Own")
    globex_pipeline = pipeline_services.pipeline_create(actor=outsider, project=globex_project, name="Own")
    pipeline_services.pipeline_version_create(actor=outsider, pipeline=globex_pipeline, graph=version.graph)
    ids = {
        "api-keys": key.pk,
        "approval-rules": acme.approval_rules.first().pk,
        "connection-bindings": stages["production"].connection_bindings.first().pk,
        "connection-roles": acme.connection_roles.first().pk,
        "deployments": pipeline.deployments.first().pk,
        "environments": stages["production"].pk,
        "memberships": acme.memberships.first().pk,
        "notification-channels": channel.pk,
        "notifications": Notification.objects.filter(organization=acme).first().pk,
        "organizations": acme.pk,
        "personal-overrides": personal.pk,
        "pipelines": pipeline.pk,
        "projects": project.pk,
        "promotions": promotion.pk,
        "repositories": repository.pk,
        "runs": run.pk,
        "schedules": pipeline.schedules.first().pk,
        "triggers": hook.pk,
        "token": hook.token,
        "secrets": acme.secrets.first().pk,
        "service-accounts": account.pk,
        "variable-overrides": stages["production"].variable_overrides.first().pk,
        "variables": acme.variables.first().pk,
        "window_id": window.pk,
        "number": version.number,
    }
    values = {
        "organization": acme.slug,
        "project": project.pk,
        "pipeline": pipeline.pk,
        "upstream_pipeline": pipeline.pk,
        "variable": ids["variables"],
        "role": ids["connection-roles"],
        "environment": "production",
        "source": "development",
        "target": "staging",
        "version": version.number,
        "attached_runs": [run.pk],
        "notification_channels": [channel.pk],
        "username": admin.username,
    }
    return World(ids, values, outsider, globex, globex_env, globex_project, globex_pipeline)


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker, tmp_path_factory):
    with django_db_blocker.unblock(), override_settings(VAR_DIR=tmp_path_factory.mktemp("sweep")):
        outer = transaction.atomic()
        outer.__enter__()
        try:
            yield _build_world()
        finally:
            transaction.set_rollback(True)
            outer.__exit__(None, None, None)


# --- helpers ---------------------------------------------------------------------------------------------


def row_counts() -> tuple:
    """The row count of every table, in one query."""
    tables = sorted(
        {m._meta.db_table for m in apps.get_models(include_auto_created=True) if m._meta.managed and not m._meta.proxy}
    )
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        counts = ", ".join(f"(SELECT COUNT(*) FROM {quote(t)})" for t in tables)  # noqa: S608 - model tables
        cursor.execute(f"SELECT {counts}")
        return tuple(zip(tables, cursor.fetchone(), strict=True))


def _resolve(schema: dict) -> dict:
    while "$ref" in schema:
        schema = SCHEMA["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _value(name: str, schema: dict, world: World):
    if name in world.values:
        return world.values[name]
    schema = _resolve(schema)
    if "enum" in schema:
        return schema["enum"][0]
    if "allOf" in schema or "oneOf" in schema:
        return _value(name, (schema.get("allOf") or schema["oneOf"])[0], world)
    return {"integer": 1, "number": 1, "boolean": False, "array": [], "object": {}}.get(schema.get("type"), "sweep")


def request_body(method: str, path: str, world: World) -> dict | None:
    """A body naming the organization's objects: every required field, and every field the world
    has an acme value for."""
    operation = SCHEMA["paths"][path][method]
    content = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if content is None:
        return None
    schema = _resolve(content["schema"])
    required = set(schema.get("required", []))
    properties = schema.get("properties", {})
    return {
        name: _value(name, prop, world)
        for name, prop in properties.items()
        if (name in required or name in world.values) and not prop.get("readOnly")
    }


def concrete_path(path: str, world: World) -> str:
    collection = path.split("/")[3]

    def fill(match):
        name = match.group(1)
        return str(world.ids[collection if name in ("id", "pk") else name])

    return re.sub(r"\{(\w+)\}", fill, path)


def call(client, method: str, path: str, world: World):
    body = request_body(method, path, world)
    kwargs = {"format": "json", "data": body} if body is not None else {}
    return getattr(client, method)(concrete_path(path, world), **kwargs)


# --- the sweep --------------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m.upper()} {p}" for m, p in OPERATIONS])
def test_anonymous_client_is_refused_and_writes_nothing(world, method, path):
    before = row_counts()
    response = call(APIClient(), method, path, world)
    assert response.status_code in (401, 403), response.content[:300]
    assert row_counts() == before


@pytest.mark.django_db
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m.upper()} {p}" for m, p in OPERATIONS])
def test_member_of_another_organization_sees_and_writes_nothing(world, method, path):
    client = APIClient()
    client.force_login(world.outsider)
    before = row_counts()
    response = call(client, method, path, world)
    if path in SIGNED_PATHS:
        assert response.status_code == 401, response.content[:300]
    elif "{" in path:
        assert response.status_code in (403, 404), response.content[:300]
    elif method == "get":
        assert response.status_code in (200, 400), response.content[:300]
        text = response.content.decode()
        assert not [marker for marker in ACME_MARKERS if marker in text], text[:300]
    else:
        assert response.status_code in (200, 400, 403, 404), response.content[:300]
    assert row_counts() == before


# --- related ids: another organization's id answers like a missing one -----------------------------------------


def _oracle_cases(world: World):
    """(method, path, body, field): a body the outsider could send for their own organization, to
    which the test adds one related id `field`, pointing into acme or at nothing."""
    own = {"organization": world.outsider_org.slug}
    env = world.outsider_env.slug
    return [
        ("post", "/api/v1/variables/", {**own, "name": "v"}, "project"),
        ("post", "/api/v1/variables/", {**own, "name": "v"}, "pipeline"),
        ("post", "/api/v1/variable-overrides/", {"environment": env, "value": 1}, "variable"),
        ("post", "/api/v1/personal-overrides/", {"environment": env, "value": 1}, "variable"),
        ("post", "/api/v1/connection-roles/", {**own, "name": "r", "kind": "postgres"}, "project"),
        ("post", "/api/v1/connection-bindings/", {"environment": env, "params": {}}, "role"),
        ("post", "/api/v1/pipelines/", {"name": "p"}, "project"),
        ("patch", f"/api/v1/environments/{world.outsider_env.pk}/policy/", {}, "notification_channels"),
        ("post", "/api/v1/runs/", {"environment": env}, "pipeline"),
        ("post", "/api/v1/deployments/", {"environment": env, "version": 1}, "pipeline"),
        ("post", "/api/v1/schedules/", {"environment": env, "cron": "0 6 * * *"}, "pipeline"),
        ("post", "/api/v1/triggers/", {"environment": env, "kind": "on_success"}, "pipeline"),
        (
            "post",
            "/api/v1/triggers/",
            {"pipeline": world.outsider_pipeline.pk, "environment": env, "kind": "on_success"},
            "upstream_pipeline",
        ),
        ("post", "/api/v1/promotions/", {"version": 1, "source": env}, "pipeline"),
        (
            "post",
            "/api/v1/promotions/",
            {"pipeline": world.outsider_pipeline.pk, "version": 1, "source": env},
            "attached_runs",
        ),
    ]


def _answer(client, method, path, body, field, value):
    """(status, the error's messages for `field` with the id itself replaced by <id>)."""
    response = getattr(client, method)(path, data={**body, field: value}, format="json")
    messages = response.json().get("error", {}).get("fields", {}).get(field, [])
    text = " ".join(messages)
    for pk in value if isinstance(value, list) else [value]:
        text = text.replace(str(pk), "<id>")
    return response.status_code, text


@pytest.mark.django_db
def test_a_related_id_of_another_organization_answers_like_a_missing_id(world):
    client = APIClient()
    client.force_login(world.outsider)
    before = row_counts()
    for method, path, body, field in _oracle_cases(world):
        acme_value = world.values[field]
        missing = [MISSING_ID] if isinstance(acme_value, list) else MISSING_ID
        foreign = _answer(client, method, path, body, field, acme_value)
        absent = _answer(client, method, path, body, field, missing)
        assert foreign == absent, (method, path, field)
        assert foreign[0] == 400 and foreign[1], (method, path, field, foreign)  # the field itself is named
    assert row_counts() == before


def _input_serializers():
    """Every serializer class of the project (input serializers are StrictSerializer subclasses)."""
    found, pending = set(), [serializers.Serializer]
    while pending:
        cls = pending.pop()
        for sub in cls.__subclasses__():
            if sub not in found:
                found.add(sub)
                pending.append(sub)
    concrete = [cls for cls in found if not (issubclass(cls, serializers.ModelSerializer) and not hasattr(cls, "Meta"))]
    return [cls for cls in concrete if cls.__module__.startswith("apps.")]


# Slug fields whose own get_queryset starts from the door or from an already visible organization.
DOOR_SLUG_FIELDS = {"MemberOrganizationField", "_PromotesToField"}


def test_every_writable_related_field_looks_up_through_the_door():
    """A writable related field on a tenant-scoped model must be a VisibleRelatedField (or one of the
    slug fields above): a plain PrimaryKeyRelatedField(queryset=Model.objects.all()) would answer
    another organization's id differently from a missing one."""
    offenders = []
    for cls in _input_serializers():
        for name, field in cls().fields.items():
            relation = field.child_relation if isinstance(field, serializers.ManyRelatedField) else field
            if field.read_only or not isinstance(relation, serializers.RelatedField):
                continue
            model = relation.queryset.model if relation.queryset is not None else None
            scoped = model is not None and hasattr(model._default_manager, "restrict")
            if (
                scoped
                and not isinstance(relation, VisibleRelatedField)
                and type(relation).__name__ not in DOOR_SLUG_FIELDS
            ):
                offenders.append(f"{cls.__module__}.{cls.__name__}.{name}")
    assert offenders == []


# --- the door itself ----------------------------------------------------------------------------------------


# Rows the world does not make (a beat tick, a second person's decision); restrict() on them is the
# same code as on their parents (Schedule, PromotionRequest).
NOT_IN_THE_WORLD = {"ScheduleFire", "ApprovalDecision"}


def _restricted_models():
    return [
        model
        for model in apps.get_models()
        if model.__module__.startswith("apps.") and hasattr(model._default_manager, "restrict")
    ]


def test_every_tenant_scoped_model_has_restrict():
    """A model that points at a tenant-scoped model is tenant-scoped itself (history rows aside:
    the audit feed filters those by their environment and organization)."""
    missing = [
        model._meta.label
        for model in apps.get_models()
        if model.__module__.startswith("apps.")
        and not model.__name__.startswith("Historical")
        and not hasattr(model._default_manager, "restrict")
        and any(
            f.is_relation and hasattr(f.related_model._default_manager, "restrict") for f in model._meta.concrete_fields
        )
    ]
    assert missing == []


@pytest.mark.django_db
def test_restrict_shows_another_organizations_member_nothing(world):
    acme = Organization.objects.get(slug="acme")
    empty = set()
    for model in _restricted_models():
        if not model._default_manager.all().in_organization(acme).exists():
            empty.add(model.__name__)
        assert not model._default_manager.restrict(world.outsider).in_organization(acme).exists(), model
        assert not model._default_manager.restrict(AnonymousUser()).exists(), model
    assert empty == NOT_IN_THE_WORLD  # the check above met real rows of every other model
