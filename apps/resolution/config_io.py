"""Configuration as code: export an organization's configuration layer to YAML and import it back.

Exported: secrets (metadata only, never values), projects and pipelines (not their versions),
variables with their overrides, connection roles with their bindings, Git repositories (their secrets
by name only). Import goes through the same services as the API and admin (so every rule holds),
inside one transaction: a dry run applies and rolls back, so it validates everything and reports
exactly what --apply would change. Import never deletes what the document omits."""

from dataclasses import dataclass, field
from functools import partial
from typing import Any, NoReturn

import yaml
from django.db import transaction
from django.utils import timezone

from apps.connections import services as connection_services
from apps.connections.models import ConnectionBinding, ConnectionRole
from apps.core.bounded_yaml import load_bounded
from apps.core.errors import DomainError, ValidationFailed
from apps.core.types import User
from apps.environments.models import Environment
from apps.pipelines import services as pipeline_services
from apps.pipelines.models import Pipeline, Project
from apps.repositories import config_io as repository_config
from apps.secrets import services as secret_services
from apps.secrets.models import Secret
from apps.variables import services as variable_services
from apps.variables.models import VARIABLE_CHECKS, Variable, VariableOverride

FORMAT_VERSION = 1
DEFINITION_KEYS = ("type", "description", *VARIABLE_CHECKS)


def _scope_label(project=None, pipeline=None) -> str:
    if pipeline is not None:
        return f"pipeline:{pipeline.project.slug}/{pipeline.slug}"
    if project is not None:
        return f"project:{project.slug}"
    return "organization"


def export_configuration(organization) -> dict:
    """The organization's configuration layer as a plain document (secret values never included)."""
    secrets = [
        {
            "name": s.name,
            "provider": s.provider,
            "reference": s.reference,
            "description": s.description,
            "allowed_environments": sorted(e.slug for e in s.allowed_environments.all()),
        }
        for s in Secret.objects.filter(organization=organization).prefetch_related("allowed_environments")
    ]
    projects = [
        {
            "slug": p.slug,
            "name": p.name,
            "description": p.description,
            "default_environment": p.default_environment.slug if p.default_environment else None,
            "pipelines": [
                {"slug": pl.slug, "name": pl.name, "description": pl.description} for pl in p.pipelines.order_by("slug")
            ],
        }
        for p in Project.objects.filter(organization=organization)
        .select_related("default_environment")
        .order_by("slug")
    ]
    overrides: dict[int, dict] = {}
    for o in VariableOverride.objects.filter(variable__organization=organization).select_related(
        "environment", "secret"
    ):
        overrides.setdefault(o.variable_id, {})[o.environment.slug] = (
            {"secret": o.secret.name} if o.secret else {"value": o.value}
        )
    variables = []
    for v in (
        Variable.objects.filter(organization=organization)
        .select_related("project", "pipeline__project", "default_secret")
        .order_by("name", "project_id", "pipeline_id")
    ):
        entry: dict[str, Any] = {"name": v.name, "scope": _scope_label(v.project, v.pipeline)}
        entry.update({k: getattr(v, k) for k in DEFINITION_KEYS})
        entry["default"] = {"secret": v.default_secret.name} if v.default_secret else {"value": v.default_value}
        entry["overrides"] = dict(sorted(overrides.get(v.pk, {}).items()))
        variables.append(entry)
    bindings: dict[int, dict] = {}
    for b in ConnectionBinding.objects.filter(role__organization=organization).select_related(
        "environment", "credential"
    ):
        bindings.setdefault(b.role_id, {})[b.environment.slug] = {
            "params": b.params,
            "credential": b.credential.name if b.credential else None,
        }
    connections = [
        {
            "name": r.name,
            "scope": _scope_label(r.project),
            "kind": r.kind,
            "description": r.description,
            "required_in": r.required_in,
            "bindings": dict(sorted(bindings.get(r.pk, {}).items())),
        }
        for r in ConnectionRole.objects.filter(organization=organization).select_related("project").order_by("name")
    ]
    return {
        "format": FORMAT_VERSION,
        "organization": organization.slug,
        "exported_at": timezone.now().isoformat(timespec="seconds"),
        "environments": list(
            Environment.objects.filter(organization=organization).order_by("position").values_list("slug", flat=True)
        ),
        "secrets": secrets,
        "projects": projects,
        "variables": variables,
        "connections": connections,
        "repositories": repository_config.export_repositories(organization),
    }


def dump_yaml(document: dict) -> str:
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, default_flow_style=False)


@dataclass
class ImportReport:
    changes: list[str] = field(default_factory=list)
    unchanged: int = 0
    applied: bool = False

    def change(self, line: str) -> None:
        self.changes.append(line)


class _Rollback(Exception):
    """Raised to undo a dry run after everything was validated."""


def load_yaml(text: str) -> dict:
    document = load_bounded(text)
    if not isinstance(document, dict):
        raise ValidationFailed("document: expected a mapping at the top.", fields={"document": ["Not a mapping."]})
    if document.get("format") != FORMAT_VERSION:
        raise ValidationFailed(f"format: expected {FORMAT_VERSION}.", fields={"format": ["Unsupported format."]})
    return document


def import_configuration(organization, document: dict, *, actor: User, apply: bool) -> ImportReport:
    """Apply `document` to the organization (or, without `apply`, report what would change)."""
    if document.get("organization") not in (None, organization.slug):
        raise ValidationFailed(
            f"organization: the document is for '{document.get('organization')}', not '{organization.slug}'.",
            fields={"organization": ["Mismatch."]},
        )
    report = ImportReport()
    try:
        with transaction.atomic():
            _Importer(organization, actor, report).run(document)
            if not apply:
                raise _Rollback
    except _Rollback:
        return report
    report.applied = True
    return report


class _Importer:
    def __init__(self, organization, actor: User, report: ImportReport):
        self.organization = organization
        self.actor = actor
        self.report = report
        self.environments = {
            e.slug: e for e in Environment.objects.filter(organization=organization).select_related("policy")
        }

    def fail(self, where: str, message: str) -> NoReturn:
        raise ValidationFailed(f"{where}: {message}", fields={where: [message]})

    def run(self, document: dict) -> None:
        for section in ("secrets", "projects", "variables", "connections", "repositories"):
            items = document.get(section) or []
            if not isinstance(items, list):
                self.fail(section, "Expected a list.")
            for index, item in enumerate(items):
                where = f"{section}[{index}]"
                if not isinstance(item, dict):
                    self.fail(where, "Expected a mapping.")
                try:
                    getattr(self, f"_{section}")(item, where)
                except DomainError as exc:
                    raise ValidationFailed(f"{where}: {exc.message}", fields={where: [exc.message]}) from exc

    def apply_changes(self, label: str, instance, changes: dict, update):
        """Apply `changes` through the service call `update(actor=..., **changes)` and report them
        ("~ <label>: <fields>"), or count the item unchanged. Returns what the call returns, or `instance`."""
        if not changes:
            self.report.unchanged += 1
            return instance
        updated = update(actor=self.actor, **changes)
        self.report.change(f"~ {label}: {', '.join(sorted(changes))}")
        return updated

    def _repositories(self, item, where):
        repository_config.import_repository(self, item, where)

    def _environment(self, slug, where):
        if slug not in self.environments:
            self.fail(where, f"Unknown environment '{slug}'.")
        return self.environments[slug]

    def _secret(self, name, where):
        if name is None:
            return None
        secret = Secret.objects.filter(organization=self.organization, name=name).first()
        if secret is None:
            self.fail(where, f"Unknown secret '{name}' (secret values are never exported; create it first).")
        return secret

    def _scope(self, label, where):
        if label in (None, "organization"):
            return None, None
        kind, _, rest = str(label).partition(":")
        if kind == "project":
            project = Project.objects.filter(organization=self.organization, slug=rest).first()
            if project is None:
                self.fail(where, f"Unknown project '{rest}'.")
            return project, None
        if kind == "pipeline" and "/" in rest:
            project_slug, pipeline_slug = rest.split("/", 1)
            pipeline = Pipeline.objects.filter(
                project__organization=self.organization, project__slug=project_slug, slug=pipeline_slug
            ).first()
            if pipeline is None:
                self.fail(where, f"Unknown pipeline '{rest}'.")
            return pipeline.project, pipeline
        self.fail(where, f"Scope '{label}' is not organization, project:<slug> or pipeline:<project>/<pipeline>.")
        return None, None

    def _secrets(self, item, where):
        secret = Secret.objects.filter(organization=self.organization, name=item.get("name")).first()
        allowed = [self._environment(s, f"{where}.allowed_environments") for s in item.get("allowed_environments", [])]
        if secret is None:
            if item.get("provider", "local") == "local":
                self.fail(
                    where,
                    f"Secret '{item.get('name')}' does not exist; local secret values are never exported, "
                    "so create it (with its value) first.",
                )
            secret_services.secret_create(
                actor=self.actor,
                organization=self.organization,
                name=item.get("name"),
                provider=item["provider"],
                reference=item.get("reference", ""),
                allowed_environments=allowed,
                description=item.get("description", ""),
            )
            self.report.change(f"+ secret {item.get('name')} ({item['provider']})")
            return
        current = sorted(e.slug for e in secret.allowed_environments.all())
        changes: dict[str, Any] = {}
        if sorted(e.slug for e in allowed) != current:
            changes["allowed_environments"] = allowed
        if item.get("description", secret.description) != secret.description:
            changes["description"] = item["description"]
        if secret.provider != "local" and item.get("reference", secret.reference) != secret.reference:
            changes["reference"] = item["reference"]
        self.apply_changes(
            f"secret {secret.name}", secret, changes, partial(secret_services.secret_update, secret=secret)
        )

    def _projects(self, item, where):
        project = Project.objects.filter(organization=self.organization, slug=item.get("slug")).first()
        default = item.get("default_environment")
        default_env = self._environment(default, f"{where}.default_environment") if default else None
        if project is None:
            project = pipeline_services.project_create(
                actor=self.actor,
                organization=self.organization,
                name=item.get("name") or item.get("slug"),
                slug=item.get("slug") or "",
                description=item.get("description", ""),
                default_environment=default_env,
            )
            self.report.change(f"+ project {project.slug}")
        else:
            changes: dict[str, Any] = {}
            if item.get("name", project.name) != project.name:
                changes["name"] = item["name"]
            if item.get("description", project.description) != project.description:
                changes["description"] = item["description"]
            if "default_environment" in item and default_env != project.default_environment:
                changes["default_environment"] = default_env
            self.apply_changes(
                f"project {project.slug}", project, changes, partial(pipeline_services.project_update, project=project)
            )
        for index, spec in enumerate(item.get("pipelines") or []):
            if not isinstance(spec, dict):
                self.fail(f"{where}.pipelines[{index}]", "Expected a mapping.")
            pipeline = Pipeline.objects.filter(project=project, slug=spec.get("slug")).first()
            if pipeline is None:
                pipeline_services.pipeline_create(
                    actor=self.actor,
                    project=project,
                    name=spec.get("name") or spec.get("slug") or "",
                    slug=spec.get("slug") or "",
                    description=spec.get("description", ""),
                )
                self.report.change(f"+ pipeline {project.slug}/{spec.get('slug')}")
            else:
                self.report.unchanged += 1

    def _variables(self, item, where):
        project, pipeline = self._scope(item.get("scope"), f"{where}.scope")
        name = item.get("name")
        unknown = set(item) - {"name", "scope", "default", "overrides", *DEFINITION_KEYS}
        if unknown:
            self.fail(where, f"Unknown keys: {', '.join(sorted(unknown))}.")
        default = item.get("default") or {}
        definition = {k: item[k] for k in DEFINITION_KEYS if k in item}
        if "secret" in default:
            definition["default_secret"] = self._secret(default["secret"], f"{where}.default.secret")
            definition["default_value"] = None
        else:
            definition["default_value"] = default.get("value")
            definition["default_secret"] = None
        variable = Variable.objects.filter(
            organization=self.organization, name=name, project=project, pipeline=pipeline
        ).first()
        label = f"{name} ({_scope_label(project, pipeline)})"
        if variable is None:
            variable = variable_services.variable_create(
                actor=self.actor,
                organization=self.organization,
                name=name,
                project=project,
                pipeline=pipeline,
                **definition,
            )
            self.report.change(f"+ variable {label}")
        else:
            changes = {k: v for k, v in definition.items() if getattr(variable, k) != v}
            variable = self.apply_changes(
                f"variable {label}", variable, changes, partial(variable_services.variable_update, variable=variable)
            )
        overrides = item.get("overrides") or {}
        if not isinstance(overrides, dict):
            self.fail(f"{where}.overrides", "Expected a mapping of environment slug to {value: ...} or {secret: ...}.")
        for slug, spec in overrides.items():
            environment = self._environment(slug, f"{where}.overrides.{slug}")
            if not isinstance(spec, dict) or not (set(spec) <= {"value", "secret"}) or len(spec) != 1:
                self.fail(f"{where}.overrides.{slug}", "Give {value: ...} or {secret: <name>}.")
            secret = self._secret(spec.get("secret"), f"{where}.overrides.{slug}.secret")
            value = spec.get("value")
            existing = VariableOverride.objects.filter(variable=variable, environment=environment).first()
            if existing and existing.value == value and existing.secret_id == (secret.pk if secret else None):
                self.report.unchanged += 1
                continue
            variable_services.variable_override_set(
                actor=self.actor, variable=variable, environment=environment, value=value, secret=secret
            )
            self.report.change(f"{'~' if existing else '+'} override {name}@{slug}")

    def _connections(self, item, where):
        project, _ = self._scope(item.get("scope"), f"{where}.scope")
        name = item.get("name")
        role = ConnectionRole.objects.filter(organization=self.organization, project=project, name=name).first()
        fields = {k: item[k] for k in ("description", "required_in") if k in item}
        if role is None:
            role = connection_services.connection_role_create(
                actor=self.actor,
                organization=self.organization,
                project=project,
                name=name,
                kind=item.get("kind"),
                **fields,
            )
            self.report.change(f"+ connection role {name}")
        else:
            if item.get("kind", role.kind) != role.kind:
                fields["kind"] = item["kind"]
            changes = {k: v for k, v in fields.items() if getattr(role, k) != v}
            role = self.apply_changes(
                f"connection role {name}", role, changes, partial(connection_services.connection_role_update, role=role)
            )
        for slug, spec in (item.get("bindings") or {}).items():
            environment = self._environment(slug, f"{where}.bindings.{slug}")
            if not isinstance(spec, dict):
                self.fail(f"{where}.bindings.{slug}", "Give {params: {...}, credential: <secret name or null>}.")
            credential = self._secret(spec.get("credential"), f"{where}.bindings.{slug}.credential")
            params = spec.get("params") or {}
            existing = ConnectionBinding.objects.filter(role=role, environment=environment).first()
            if (
                existing
                and existing.params == params
                and existing.credential_id == (credential.pk if credential else None)
            ):
                self.report.unchanged += 1
                continue
            connection_services.connection_binding_set(
                actor=self.actor, role=role, environment=environment, params=params, credential=credential
            )
            self.report.change(f"{'~' if existing else '+'} binding {name}@{slug}")
