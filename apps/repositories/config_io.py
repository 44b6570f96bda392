"""The repositories section of configuration as code (apps/resolution/config_io.py calls these):
remote, branch, definition path and the *names* of the credential and webhook secrets, never a value."""

from functools import partial
from typing import TYPE_CHECKING

from apps.pipelines.models import Pipeline

from . import services
from .models import Repository

if TYPE_CHECKING:  # resolution imports this module: the type only, for mypy
    from apps.resolution.config_io import _Importer

FIELDS = ("clone_url", "default_branch", "definition_path")


def export_repositories(organization) -> list[dict]:
    rows = (
        Repository.objects.in_organization(organization)
        .select_related("pipeline__project", "credential", "webhook_secret")
        .order_by("pipeline__project__slug", "pipeline__slug")
    )
    return [
        {
            "pipeline": f"{r.pipeline.project.slug}/{r.pipeline.slug}",
            **{name: getattr(r, name) for name in FIELDS},
            "credential": r.credential.name if r.credential_id else None,
            "webhook_secret": r.webhook_secret.name if r.webhook_secret_id else None,
        }
        for r in rows
    ]


def import_repository(importer: "_Importer", item: dict, where: str) -> None:
    """Create or update one repository through the services (`importer`: config_io's _Importer)."""
    label = str(item.get("pipeline") or "")
    project_slug, _, pipeline_slug = label.partition("/")
    pipeline = Pipeline.objects.filter(
        project__organization=importer.organization, project__slug=project_slug, slug=pipeline_slug
    ).first()
    if pipeline is None:
        importer.fail(f"{where}.pipeline", f"Unknown pipeline '{label}' (give <project>/<pipeline>).")
    wanted = {name: item[name] for name in FIELDS if name in item}
    for name in ("credential", "webhook_secret"):
        if name in item:
            wanted[name] = importer._secret(item[name], f"{where}.{name}")
    repository = Repository.objects.filter(pipeline=pipeline).select_related("credential", "webhook_secret").first()
    if repository is None:
        services.repository_create(actor=importer.actor, pipeline=pipeline, **wanted)
        importer.report.change(f"+ repository {label}")
        return
    changes = {name: value for name, value in wanted.items() if getattr(repository, name) != value}
    importer.apply_changes(
        f"repository {label}", repository, changes, partial(services.repository_update, repository=repository)
    )
