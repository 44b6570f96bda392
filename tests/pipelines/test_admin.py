"""Pipelines admin: pages load, add/change go through the services (errors are form errors), versions
are read-only with a pretty graph, graph errors on the add form name node and field."""

import json

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from apps.environments import services as env_services
from apps.environments.models import Kind
from apps.pipelines import services
from apps.pipelines.models import Pipeline, PipelineVersion, Project

from .conftest import graph, node

pytestmark = pytest.mark.django_db


def url(model, view, *args):
    return reverse(f"admin:pipelines_{model._meta.model_name}_{view}", args=args)


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def form_errors(response) -> dict:
    assert response.status_code == 200, response.status_code
    return response.context["adminform"].form.errors


def version_payload(pipeline, graph_, **overrides):
    data = {
        "pipeline": pipeline.pk,
        "graph": json.dumps(graph_),
        "message": "from the admin",
        "git_repository": "https://git.example.com/acme/pipelines",
        "git_commit": "abcdef1",
        "git_branch": "main",
        "git_tag": "",
        "compare_url": "",
        "_save": "Save",
    }
    data.update(overrides)
    return data


@pytest.fixture
def globex(other_org, other_owner):
    """tests/conftest.py's other_org with an environment, a project and a pipeline of its own."""
    owner = other_owner
    environment = env_services.environment_create(
        actor=owner, organization=other_org, name="Prod", kind=Kind.PRODUCTION
    )
    project = services.project_create(actor=owner, organization=other_org, name="Theirs")
    pipeline = services.pipeline_create(actor=owner, project=project, name="Their pipeline")
    services.pipeline_version_create(actor=owner, pipeline=pipeline, graph=graph())
    return {"org": other_org, "environment": environment, "project": project, "pipeline": pipeline, "owner": owner}


@pytest.mark.parametrize("who", ["superuser", "org_admin"])
def test_pages_load(request, who, project, pipeline, version):
    client = login(request.getfixturevalue(who))
    objects = {Project: project, Pipeline: pipeline, PipelineVersion: version}
    for model, obj in objects.items():
        for page in (
            url(model, "changelist"),
            url(model, "add"),
            url(model, "change", obj.pk),
            url(model, "history", obj.pk),
        ):
            response = client.get(page)
            assert response.status_code == 200, (page, response.status_code)
        assert client.get(url(model, "changelist"), {"q": "o"}).status_code == 200
    pipeline_page = client.get(url(Pipeline, "change", pipeline.pk)).content.decode()
    assert version.content_hash in pipeline_page  # the read-only versions inline
    assert client.get(url(Project, "history", project.pk)).status_code == 200


def test_version_change_page_is_read_only_and_pretty(superuser, version):
    client = login(superuser)
    response = client.get(url(PipelineVersion, "change", version.pk))
    page = response.content.decode()
    assert "<pre>" in page and "&quot;orders_src&quot;" in page and '\n  "edges": [' in page.replace("&quot;", '"')
    assert 'name="graph"' not in page and 'name="message"' not in page  # nothing to edit
    assert "git_branch" in page or "Git branch" in page
    refused = client.post(url(PipelineVersion, "change", version.pk), {"message": "rewritten"})
    assert refused.status_code == 403
    assert client.post(url(PipelineVersion, "delete", version.pk), {"post": "yes"}).status_code == 403
    version.refresh_from_db()
    assert version.message == "first"


def test_add_version_goes_through_the_service(org_admin, pipeline, version):
    response = login(org_admin).post(
        url(PipelineVersion, "add"), version_payload(pipeline, graph(edges=[["orders_src", "orders_out"]]))
    )
    assert response.status_code == 302, form_errors(response)
    latest = services.latest_version(pipeline)
    assert latest.number == 2 and latest.author == org_admin and latest.message == "from the admin"
    assert latest.git_commit == "abcdef1" and latest.content_hash == version.content_hash


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda g: node(g, "orders_out").pop("table"), "graph.nodes[orders_out].table"),
        (lambda g: node(g, "orders_src").update(type="teleporter"), "graph.nodes[orders_src].type"),
        (lambda g: node(g, "orders_src").update(colour="red"), "graph.nodes[orders_src].colour"),
        (lambda g: g.update(edges=[]), "graph.nodes[orders_out]"),
    ],
)
def test_graph_errors_show_on_the_add_form(org_admin, pipeline, mutate, expected):
    bad = graph()
    mutate(bad)
    errors = form_errors(login(org_admin).post(url(PipelineVersion, "add"), version_payload(pipeline, bad)))
    assert any(expected in message for message in errors.get("graph", [])), errors
    assert not PipelineVersion.objects.exists()


def test_other_version_form_errors(org_admin, pipeline):
    client = login(org_admin)
    assert "graph" in form_errors(
        client.post(url(PipelineVersion, "add"), version_payload(pipeline, graph(), graph="{not json"))
    )
    assert "git_commit" in form_errors(
        client.post(url(PipelineVersion, "add"), version_payload(pipeline, graph(), git_commit="XYZ"))
    )
    assert not PipelineVersion.objects.exists()


def test_project_add_and_change_go_through_the_services(org, org_admin, stages):
    client = login(org_admin)
    response = client.post(
        url(Project, "add"),
        {
            "organization": org.pk,
            "name": "Marketing",
            "slug": "",
            "description": "",
            "default_environment": stages["staging"].pk,
            "_save": "Save",
        },
    )
    assert response.status_code == 302, form_errors(response)
    project = Project.objects.get(name="Marketing")
    assert project.slug == "marketing" and project.default_environment == stages["staging"]
    assert project.history.get().history_user == org_admin
    duplicate = client.post(
        url(Project, "add"), {"organization": org.pk, "name": "Marketing", "slug": "", "_save": "Save"}
    )
    assert "slug" in form_errors(duplicate)
    changed = client.post(
        url(Project, "change", project.pk),
        {
            "name": "Marketing EU",
            "slug": "marketing",
            "description": "d",
            "default_environment": stages["production"].pk,
            "_save": "Save",
        },
    )
    assert changed.status_code == 302, form_errors(changed)
    project.refresh_from_db()
    assert (project.name, project.default_environment) == ("Marketing EU", stages["production"])
    assert project.history.latest().history_user == org_admin


def test_default_environment_is_limited_to_the_organization(org, org_admin, project, stages, globex, superuser):
    client = login(org_admin)
    choices = (
        client.get(url(Project, "change", project.pk)).context["adminform"].form.fields["default_environment"].queryset
    )
    assert set(choices) == set(stages.values())
    payload = {
        "name": project.name,
        "slug": project.slug,
        "description": "",
        "default_environment": globex["environment"].pk,
        "_save": "Save",
    }
    assert "default_environment" in form_errors(client.post(url(Project, "change", project.pk), payload))
    # A superuser picks among every environment on add; the service refuses another organization's.
    refused = login(superuser).post(
        url(Project, "add"),
        {
            "organization": org.pk,
            "name": "Cross",
            "slug": "",
            "default_environment": globex["environment"].pk,
            "_save": "Save",
        },
    )
    assert "default_environment" in form_errors(refused)
    project.refresh_from_db()
    assert project.default_environment == stages["development"]
    assert not Project.objects.filter(name="Cross").exists()


def test_pipeline_add_change_delete_go_through_the_services(org_admin, project, pipeline, version):
    client = login(org_admin)
    response = client.post(
        url(Pipeline, "add"), {"project": project.pk, "name": "Refunds", "slug": "", "description": "", "_save": "Save"}
    )
    assert response.status_code == 302, form_errors(response)
    refunds = Pipeline.objects.get(name="Refunds")
    assert refunds.slug == "refunds" and refunds.history.get().history_user == org_admin
    taken = client.post(
        url(Pipeline, "change", refunds.pk),
        {"name": "Refunds", "slug": pipeline.slug, "description": "", "_save": "Save"},
    )
    assert "slug" in form_errors(taken)
    deleted = client.post(url(Pipeline, "delete", refunds.pk), {"post": "yes"})
    assert deleted.status_code == 302
    assert not Pipeline.objects.filter(pk=refunds.pk).exists()
    assert Pipeline.history.filter(id=refunds.pk).latest().history_user == org_admin


def test_staff_see_only_their_organizations(org_admin, project, pipeline, version, globex):
    client = login(org_admin)
    for model, theirs in ((Project, globex["project"]), (Pipeline, globex["pipeline"])):
        listing = client.get(url(model, "changelist")).content.decode()
        assert theirs.name not in listing
        assert client.get(url(model, "change", theirs.pk)).status_code in (302, 403, 404)
    versions = client.get(url(PipelineVersion, "changelist")).content.decode()
    assert "Their pipeline" not in versions and "theirs/their-pipeline" not in versions
    their_version = globex["pipeline"].versions.get()
    assert client.get(url(PipelineVersion, "change", their_version.pk)).status_code in (302, 403, 404)
    add_form = client.get(url(PipelineVersion, "add")).context["adminform"].form
    assert list(add_form.fields["pipeline"].queryset) == [pipeline]
    refused = client.post(url(PipelineVersion, "add"), version_payload(globex["pipeline"], graph()))
    assert "pipeline" in form_errors(refused)
    assert globex["pipeline"].versions.count() == 1
    messages = [str(m) for m in get_messages(refused.wsgi_request)]
    assert not any("Their" in m for m in messages)


def test_deleting_a_pipeline_or_project_takes_its_versions(org_admin, project, pipeline, version):
    client = login(org_admin)
    confirmation = client.get(url(Pipeline, "delete", pipeline.pk))
    assert confirmation.status_code == 200 and not confirmation.context["perms_lacking"]
    assert client.post(url(Pipeline, "delete", pipeline.pk), {"post": "yes"}).status_code == 302
    assert not Pipeline.objects.filter(pk=pipeline.pk).exists() and not PipelineVersion.objects.exists()
    assert client.post(url(Project, "delete", project.pk), {"post": "yes"}).status_code == 302
    assert not Project.objects.filter(pk=project.pk).exists()
    assert Project.history.filter(id=project.pk).latest().history_user == org_admin


def test_members_cannot_delete_through_the_admin(members, project, pipeline):
    developer = members["developer"]
    developer.is_staff = True
    developer.save()
    client = login(developer)
    assert client.get(url(Pipeline, "changelist")).status_code == 403
    assert client.post(url(Pipeline, "delete", pipeline.pk), {"post": "yes"}).status_code in (302, 403, 404)
    assert Pipeline.objects.filter(pk=pipeline.pk).exists()
