"""What a resolve request names, read in one statement: the pipeline (with its project), the
environment of that slug in the pipeline's organization, the version (a number, or the latest) and
the organization's configuration revision.

A warm resolve is then this one query and one cache read (the answer is cached under the ids and
the revision read here). Through the ORM the four lookups cost ~4 ms of query compilation a
request, fifteen times the queries themselves; the statement is written once per database alias
(apps.core.raw_rows). Reading the revision in the same statement as the rows it keys also gives
them one snapshot."""

from dataclasses import dataclass

from django.db import connections, router

from apps.core.errors import NotFound, field_error
from apps.core.raw_rows import column, instances, model_columns, table
from apps.environments.models import Environment
from apps.pipelines.models import Pipeline, PipelineVersion, Project
from apps.pipelines.selectors import _is_id as is_id
from apps.tenancy.models import ConfigRevision
from apps.tenancy.permissions import organization_ids_where

_STATEMENTS: dict[tuple[str, bool], tuple[str, list]] = {}  # (alias, by number) -> (SQL, layouts)


@dataclass(frozen=True, slots=True)
class Target:
    pipeline: Pipeline  # its `project` loaded
    environment: Environment
    version: PipelineVersion | None  # None: the pipeline has no version yet; `graph` loads on first use
    revision: int


def _statement(alias: str, by_number: bool) -> tuple[str, list]:
    if (alias, by_number) not in _STATEMENTS:
        connection = connections[alias]

        def col(model, name):
            return column(connection, model, name)

        light = [f.name for f in PipelineVersion._meta.concrete_fields if f.name not in PipelineVersion.HEAVY_FIELDS]
        parts = [
            model_columns(Pipeline, "p", connection),
            model_columns(Project, "pr", connection),
            model_columns(Environment, "e", connection),
            model_columns(PipelineVersion, "v", connection, light),
        ]
        number = f"AND v2.{col(PipelineVersion, 'number')} = %s " if by_number else ""
        version_id = (
            f"(SELECT v2.{col(PipelineVersion, 'id')} FROM {table(connection, PipelineVersion)} v2 "  # noqa: S608 (identifiers only)
            f"WHERE v2.{col(PipelineVersion, 'pipeline')} = p.{col(Pipeline, 'id')} {number}"
            f"ORDER BY v2.{col(PipelineVersion, 'number')} DESC LIMIT 1)"
        )
        revision = (
            f"(SELECT r.{col(ConfigRevision, 'value')} FROM {table(connection, ConfigRevision)} r "  # noqa: S608 (identifiers only)
            f"WHERE r.{col(ConfigRevision, 'organization')} = pr.{col(Project, 'organization')})"
        )
        columns = ", ".join(name for part_columns, _layout in parts for name in part_columns)
        sql = " ".join(
            [
                f"SELECT {columns}, {revision} FROM {table(connection, Pipeline)} p",  # noqa: S608 (identifiers only)
                f"INNER JOIN {table(connection, Project)} pr ON pr.{col(Project, 'id')} = p.{col(Pipeline, 'project')}",
                f"LEFT JOIN {table(connection, Environment)} e ON e.{col(Environment, 'organization')} = "
                f"pr.{col(Project, 'organization')} AND e.{col(Environment, 'slug')} = %s",
                f"LEFT JOIN {table(connection, PipelineVersion)} v ON v.{col(PipelineVersion, 'id')} = {version_id}",
                f"WHERE p.{col(Pipeline, 'id')} = %s",
            ]
        )
        _STATEMENTS[alias, by_number] = (sql, [layout for _columns, layout in parts])
    return _STATEMENTS[alias, by_number]


def resolve_target(user, pipeline_pk, environment_slug: str, version_number: int | None = None) -> Target:
    """The pipeline `pipeline_pk` if `user` may see it (else 404 "No such pipeline.", as
    apps.pipelines.selectors.get_pipeline_for_user: the organizations of
    `Pipeline.objects.restrict(user)`), the environment `environment_slug` of its organization (else a
    400 naming `environment`) and its version `version_number`, or the latest (a 400 naming
    `version` when it has no such number), with the organization's configuration revision."""
    visible = organization_ids_where(user)
    row = None
    if is_id(pipeline_pk) and (visible is None or visible):
        alias = router.db_for_read(Pipeline)
        connection = connections[alias]
        sql, layouts = _statement(alias, version_number is not None)
        params: list[str | int] = [
            environment_slug,
            *([version_number] if version_number is not None else []),
            int(pipeline_pk),
        ]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
    if row is None:
        raise NotFound("No such pipeline.")
    (pipeline, project, environment, version), end = instances(alias, connection, layouts, row)
    if visible is not None and project.organization_id not in visible:
        raise NotFound("No such pipeline.")
    if environment is None:
        raise field_error("environment", f"No environment '{environment_slug}' in this organization.")
    if version is None and version_number is not None:
        raise field_error("version", f"Pipeline '{pipeline.slug}' has no version {version_number}.")
    pipeline.project = project
    if version is not None:
        version.pipeline = pipeline
    return Target(pipeline, environment, version, row[end] or 0)
