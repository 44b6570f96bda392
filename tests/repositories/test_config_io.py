"""Configuration as code: repositories are exported with their secrets' names (never a value),
imported back through the services, a dry run writes nothing, and bad entries name where they are."""

import pytest

from apps.core.errors import ValidationFailed
from apps.repositories import services
from apps.repositories.models import Repository
from apps.resolution import config_io

from .conftest import DEFINITION, TOKEN_VALUE, WEBHOOK_KEY

pytestmark = pytest.mark.django_db


def test_export_then_import_round_trip(org, org_admin, plain_pipeline, git_secrets):
    services.repository_create(
        actor=org_admin,
        pipeline=plain_pipeline,
        clone_url="file:///srv/git/orders.git",
        definition_path=DEFINITION,
        credential=git_secrets["token"],
        webhook_secret=git_secrets["webhook"],
    )
    document = config_io.export_configuration(org)
    text = config_io.dump_yaml(document)
    assert TOKEN_VALUE not in text and WEBHOOK_KEY not in text
    assert document["repositories"] == [
        {
            "pipeline": "git/orders",
            "clone_url": "file:///srv/git/orders.git",
            "default_branch": "main",
            "definition_path": DEFINITION,
            "credential": "git_token",
            "webhook_secret": "git_webhook",
        }
    ]
    same = config_io.import_configuration(org, config_io.load_yaml(text), actor=org_admin, apply=True)
    assert not [c for c in same.changes if "repository" in c]

    document["repositories"][0]["default_branch"] = "trunk"
    dry = config_io.import_configuration(org, document, actor=org_admin, apply=False)
    assert "~ repository git/orders: default_branch" in dry.changes
    assert Repository.objects.get().default_branch == "main"

    Repository.objects.get().delete()
    applied = config_io.import_configuration(org, document, actor=org_admin, apply=True)
    assert "+ repository git/orders" in applied.changes
    restored = Repository.objects.get()
    assert (restored.default_branch, restored.credential.name) == ("trunk", "git_token")
    assert restored.history.latest().history_user == org_admin


@pytest.mark.parametrize(
    ("entry", "where"),
    [
        ({"pipeline": "nope/orders"}, "repositories[0].pipeline"),
        ({"credential": "missing"}, "repositories[0].credential"),
        ({"definition_path": "../x.yaml"}, "repositories[0]"),
    ],
)
def test_bad_entries_name_where_they_are(org, org_admin, plain_pipeline, entry, where):
    item = {"pipeline": "git/orders", "clone_url": "file:///srv/x.git", "definition_path": DEFINITION, **entry}
    with pytest.raises(ValidationFailed) as err:
        config_io.import_configuration(org, {"format": 1, "repositories": [item]}, actor=org_admin, apply=True)
    assert where in err.value.message
    assert not Repository.objects.exists()
