"""The pages: the pipeline page shows its source repository and last sync, the request page what
the repository vouches for (commit, branch, tags, author) or "not from Git"; compare links in the
GitHub, GitLab and Bitbucket styles."""

import pytest
from django.urls import reverse

from apps.pipelines.models import PipelineVersion
from apps.repositories import git
from tests.approvals.service_helpers import new_version, request, run_ok, set_rule

from .conftest import sync

pytestmark = pytest.mark.django_db


def test_the_pipeline_and_request_pages(client, promo, origin, repository):
    sha = origin.commit_graph("a")
    origin.git("tag", "v1.0")
    origin.push("main", "v1.0")
    sync(repository)
    client.force_login(promo["org_admin"])
    page = client.get(reverse("web:pipeline-detail", args=[promo["pipeline"].pk])).content.decode()
    assert "Source repository" in page and origin.url in page and sha[:12] in page
    assert "not from Git" in page  # v1, the fixture's hand-made version

    set_rule(promo, "staging_rule", require_git=True)
    version = PipelineVersion.objects.get(git_commit=sha)
    run_ok(promo, "development", version=version)
    promotion = request(promo, version=version)
    page = client.get(reverse("web:request-detail", args=[promotion.pk])).content.decode()
    assert sha[:12] in page and "merged" in page and "v1.0" in page and "Ada Lovelace" in page

    set_rule(promo, "staging_rule", require_git=False)
    typed = new_version(promo, "typed", git_commit="abcdef1", git_merged=True)
    run_ok(promo, "development", version=typed)
    page = client.get(reverse("web:request-detail", args=[request(promo, version=typed).pk])).content.decode()
    assert "not from Git" in page and "typed in, not verified" in page


def test_a_failed_sync_shows_on_the_pipeline_page(client, promo, origin, repository):
    origin.commit("no definition", {"README.md": "x"})
    origin.push()
    sync(repository)
    client.force_login(promo["org_admin"])
    page = client.get(reverse("web:pipeline-detail", args=[promo["pipeline"].pk])).content.decode()
    assert "failed" in page and "the definition file is missing" in page


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://github.com/acme/orders.git", "https://github.com/acme/orders/compare/aaa...bbb"),
        ("git@github.com:acme/orders.git", "https://github.com/acme/orders/compare/aaa...bbb"),
        ("https://gitlab.com/acme/data/orders.git", "https://gitlab.com/acme/data/orders/-/compare/aaa...bbb"),
        ("ssh://git@bitbucket.org/acme/orders.git", "https://bitbucket.org/acme/orders/branches/compare/bbb%0Daaa"),
        ("https://git.internal.example/orders.git", ""),
        ("file:///srv/orders.git", ""),
    ],
)
def test_compare_links(url, expected):
    assert git.compare_url(url, "aaa", "bbb") == expected
