"""Pipeline services: numbering, immutability, validation that writes nothing, who may do what."""

import pytest
from django.core.exceptions import ValidationError as DjangoValidationError

from apps.core.errors import Conflict, PermissionDenied, ValidationFailed
from apps.environments import services as env_services
from apps.environments.models import Kind
from apps.pipelines import services
from apps.pipelines.models import Pipeline, PipelineVersion, Project
from apps.tenancy import services as tenancy_services
from apps.tenancy.models import Edition

from .conftest import graph, node

pytestmark = pytest.mark.django_db


def test_versions_are_numbered_and_immutable(pipeline, org_admin):
    numbers = []
    for mode in ("replace", "append", "replace"):
        g = graph()
        node(g, "orders_out")["mode"] = mode
        numbers.append(services.pipeline_version_create(actor=org_admin, pipeline=pipeline, graph=g).number)
    assert numbers == [1, 2, 3]
    first = PipelineVersion.objects.get(pipeline=pipeline, number=1)
    first.message = "rewritten"
    with pytest.raises(DjangoValidationError):
        first.save()
    assert PipelineVersion.objects.get(pk=first.pk).message == ""
    assert services.latest_version(pipeline).number == 3


def test_version_records_author_hash_and_git(pipeline, org_admin):
    version = services.pipeline_version_create(
        actor=org_admin,
        pipeline=pipeline,
        graph=graph(),
        message="first",
        git_repository="https://git.example.com/acme/pipelines",
        git_commit="3f2a9c1",
        git_branch="main",
        git_tag="v1.0.0",
        git_merged=True,
        compare_url="https://git.example.com/acme/pipelines/compare/a...b",
    )
    version.refresh_from_db()
    assert version.author == org_admin and version.message == "first"
    assert version.content_hash == services.graphs.content_hash(graph())
    assert (version.git_commit, version.git_branch, version.git_tag, version.git_merged) == (
        "3f2a9c1",
        "main",
        "v1.0.0",
        True,
    )


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"git_commit": "not-a-sha"}, "git_commit"),
        ({"git_commit": "ABCDEF1"}, "git_commit"),
        ({"compare_url": "not a url"}, "compare_url"),
        ({"git_author": "me"}, "git_author"),
        ({"message": "x" * 501}, "message"),
    ],
)
def test_bad_version_input_writes_nothing(pipeline, org_admin, kwargs, field):
    with pytest.raises(ValidationFailed) as exc:
        services.pipeline_version_create(actor=org_admin, pipeline=pipeline, graph=graph(), **kwargs)
    assert field in exc.value.fields
    assert not PipelineVersion.objects.exists()


def test_invalid_graph_writes_nothing_and_names_node_and_field(pipeline, org_admin):
    bad = graph()
    del node(bad, "orders_src")["query"]
    with pytest.raises(ValidationFailed) as exc:
        services.pipeline_version_create(actor=org_admin, pipeline=pipeline, graph=bad)
    assert "graph.nodes[orders_src].query" in exc.value.fields
    assert "orders_src" in exc.value.message
    assert not PipelineVersion.objects.exists()


def test_version_diff(pipeline, org_admin, version):
    g = graph()
    node(g, "orders_src")["query"] = "SELECT 1"
    second = services.pipeline_version_create(actor=org_admin, pipeline=pipeline, graph=g)
    result = services.version_diff(version, second)
    assert (result["from_version"], result["to_version"]) == (1, 2)
    assert result["nodes_changed"] == {
        "orders_src": {"query": {"before": "SELECT * FROM {{ db_schema }}.orders", "after": "SELECT 1"}}
    }
    first_ever = services.version_diff(None, version)
    assert first_ever["from_version"] is None and len(first_ever["nodes_added"]) == 2


def test_who_may_do_what(org, org_admin, project, pipeline, members, outsider):
    developer = members["developer"]
    with pytest.raises(PermissionDenied):
        services.project_create(actor=developer, organization=org, name="Mine")
    with pytest.raises(PermissionDenied):
        services.project_update(actor=developer, project=project, name="Renamed")
    with pytest.raises(PermissionDenied):
        services.pipeline_delete(actor=developer, pipeline=pipeline)
    mine = services.pipeline_create(actor=developer, project=project, name="Dev pipeline")
    assert services.pipeline_version_create(actor=developer, pipeline=mine, graph=graph()).author == developer
    for call in (
        lambda: services.pipeline_create(actor=outsider, project=project, name="Intruder"),
        lambda: services.pipeline_version_create(actor=outsider, pipeline=pipeline, graph=graph()),
        lambda: services.pipeline_update(actor=outsider, pipeline=pipeline, name="x"),
    ):
        with pytest.raises(PermissionDenied):
            call()
    assert not Project.objects.filter(name="Mine").exists()
    assert not Pipeline.objects.filter(name="Intruder").exists()


def test_project_rules(org, org_admin, project, stages, other_org, other_owner):
    assert project.slug == "sales" and project.default_environment == stages["development"]
    with pytest.raises(Conflict):
        services.project_create(actor=org_admin, organization=org, name="Sales")
    other = other_org
    foreign = env_services.environment_create(actor=other_owner, organization=other, name="Prod", kind=Kind.PRODUCTION)
    with pytest.raises(ValidationFailed) as exc:
        services.project_update(actor=org_admin, project=project, default_environment=foreign)
    assert "default_environment" in exc.value.fields
    with pytest.raises(ValidationFailed) as exc:
        services.project_update(actor=org_admin, project=project, organization=other)
    assert "organization" in exc.value.fields
    project.refresh_from_db()
    assert project.organization == org and project.default_environment == stages["development"]
    updated = services.project_update(actor=org_admin, project=project, name="Sales & Ops", slug="sales-ops")
    assert updated.history.latest().history_user == org_admin


def test_pipeline_update_refuses_moving_to_another_project(org, org_admin, project, pipeline):
    other = services.project_create(actor=org_admin, organization=org, name="Other")
    with pytest.raises(ValidationFailed) as exc:
        services.pipeline_update(actor=org_admin, pipeline=pipeline, project=other)
    assert "project" in exc.value.fields
    pipeline.refresh_from_db()
    assert pipeline.project == project
    with pytest.raises(Conflict):
        services.pipeline_create(actor=org_admin, project=project, name="Orders")


def test_standard_edition_projects_use_the_implicit_environment(platform_staff, org_admin):
    owner = type(org_admin).objects.create_user("smallowner", "s@example.com", "pw")
    small = tenancy_services.organization_create(
        actor=platform_staff, name="Small", slug="small", edition=Edition.STANDARD, owner=owner
    )
    project = services.project_create(actor=owner, organization=small, name="Only")
    assert project.default_environment is not None
    assert project.default_environment.organization == small
