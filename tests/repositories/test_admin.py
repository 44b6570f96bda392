"""The repositories admin: add and change through the services (refusals are form errors, nothing
written), the "sync now" action, the last sync result, and another tenant's rows out of sight."""

import pytest
from django.urls import reverse

from apps.repositories import services
from apps.repositories.models import Repository
from tests.variables.adminforms import login

from .conftest import DEFINITION, sync

pytestmark = pytest.mark.django_db

ADD = reverse("admin:repositories_repository_add")
CHANGELIST = reverse("admin:repositories_repository_changelist")


def test_add_refuses_bad_input_as_form_errors_and_then_saves(org_admin, plain_pipeline, origin):
    client = login(org_admin)
    data = {"pipeline": plain_pipeline.pk, "clone_url": "https://u:p@github.com/a/b.git", "default_branch": "main"}
    response = client.post(ADD, {**data, "definition_path": "../up.yaml"})
    assert response.status_code == 200 and response.context["adminform"].form.errors
    assert not Repository.objects.exists()
    response = client.post(ADD, {**data, "clone_url": origin.url, "definition_path": DEFINITION})
    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    repository = Repository.objects.get()
    assert repository.history.latest().history_user == org_admin


def test_sync_now_and_the_last_sync_result(org_admin, hooked, origin, monkeypatch):
    queued = []
    monkeypatch.setattr("apps.repositories.services._enqueue_sync", queued.append)
    client = login(org_admin)
    response = client.post(CHANGELIST, {"action": "sync_now", "_selected_action": [hooked.pk]}, follow=True)
    assert "Sync queued for 1 repository" in response.content.decode()
    assert hooked.sync.__class__.objects.get(repository=hooked).requested_at is not None
    origin.commit("no definition", {"README.md": "x"})
    origin.push()
    sync(hooked)
    page = client.get(reverse("admin:repositories_repository_change", args=[hooked.pk])).content.decode()
    assert "failed" in page and "the definition file is missing" in page
    assert reverse("repository-webhook", kwargs={"pk": hooked.pk}) in page


def test_another_tenants_admin_sees_nothing(platform_staff, org_admin, hooked):
    from django.contrib.auth import get_user_model

    from apps.tenancy import services as tenancy_services
    from apps.tenancy.models import Edition

    owner = get_user_model().objects.create_user("globex-owner", "o@globex.example", "pw")
    tenancy_services.organization_create(
        actor=platform_staff, name="Globex", slug="globex", edition=Edition.ENTERPRISE, owner=owner
    )
    client = login(owner)
    assert hooked.clone_url not in client.get(CHANGELIST).content.decode()
    assert client.get(reverse("admin:repositories_repository_change", args=[hooked.pk])).status_code in (302, 403, 404)
    # the action's service refuses too
    with pytest.raises(Exception, match="cannot see"):
        services.repository_sync_now(actor=owner, repository=hooked)
