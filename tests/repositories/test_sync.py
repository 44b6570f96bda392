"""Syncing a real repository: a version per commit that changed the definition (default branch's
first-parent line and tags), none for identical content, merges, and every bad input giving a clear
error on the repository with no version written and the existing ones intact."""

import json

import pytest

from apps.pipelines.models import PipelineVersion
from apps.repositories import services
from apps.repositories.models import SyncState, VersionSource
from tests.approvals.service_helpers import changed_graph

from .conftest import DEFINITION, definition, sync

pytestmark = pytest.mark.django_db


def git_versions(pipeline):
    return list(PipelineVersion.objects.filter(pipeline=pipeline, git_source__isnull=False).order_by("number"))


def test_a_version_per_commit_that_changed_the_definition(promo, origin, repository):
    first = origin.commit_graph("a")
    origin.commit("docs only", {"README.md": "hello"})
    second = origin.commit_graph("b")
    origin.push()
    status = sync(repository)
    assert (status.state, status.error, status.versions_created, status.head_commit) == (
        SyncState.OK,
        "",
        2,
        origin.git("rev-parse", "HEAD"),
    )
    versions = git_versions(promo["pipeline"])
    assert [v.git_commit for v in versions] == [first, second]
    assert versions[1].graph == changed_graph("b") and versions[1].message == "pipeline b"
    assert versions[1].git_branch == "main" and versions[1].author is None
    source = versions[1].git_source
    assert (source.commit, source.author_name, source.author_email, source.branch) == (
        second,
        "Ada Lovelace",
        "ada@example.com",
        "main",
    )

    assert sync(repository).versions_created == 0  # nothing new: nothing twice
    # Same graph, other formatting (JSON-style YAML): identical content makes no version.
    origin.commit("reformat", {DEFINITION: json.dumps(changed_graph("b"), indent=4)})
    origin.push()
    assert sync(repository).versions_created == 0
    assert len(git_versions(promo["pipeline"])) == 2


def test_merges_and_tags(promo, origin, repository):
    origin.commit_graph("base")
    origin.push()
    origin.git("checkout", "--quiet", "-b", "feature/x")
    feature = origin.commit_graph("feature")
    origin.push("feature/x")
    sync(repository)
    assert [v.git_commit for v in git_versions(promo["pipeline"])] == [origin.git("rev-parse", "main")]

    origin.git("checkout", "--quiet", "-b", "experiment", "main")
    experiment = origin.commit_graph("experiment")
    origin.git("tag", "-a", "exp-1", "-m", "try it")
    origin.push("experiment", "exp-1")
    origin.git("checkout", "--quiet", "main")
    origin.git("merge", "--quiet", "--no-ff", "-m", "merge feature", "feature/x")
    merge = origin.git("rev-parse", "HEAD")
    origin.push()
    assert sync(repository).versions_created == 2
    versions = git_versions(promo["pipeline"])
    by_commit = {v.git_commit: v for v in versions}
    assert feature not in by_commit  # the merge commit is the default branch's change
    assert by_commit[merge].graph == changed_graph("feature") and by_commit[merge].git_merged
    tagged = by_commit[experiment]
    assert (tagged.git_branch, tagged.git_tag, tagged.git_merged) == ("", "exp-1", False)
    assert tagged.git_source.tags == ["exp-1"]


def test_yaml_or_json_definition(promo, origin):
    origin.commit("json", {"pipeline.json": json.dumps(changed_graph("j"))})
    origin.push()
    repository = services.repository_create(
        actor=promo["org_admin"], pipeline=promo["pipeline"], clone_url=origin.url, definition_path="pipeline.json"
    )
    assert sync(repository).versions_created == 1
    assert git_versions(promo["pipeline"])[0].graph == changed_graph("j")


def _broken(repository, promo, expected: str):
    before = list(PipelineVersion.objects.filter(pipeline=promo["pipeline"]).values_list("pk", "content_hash"))
    status = sync(repository)
    assert status.state == SyncState.FAILED and expected in status.error, status.error
    after = list(PipelineVersion.objects.filter(pipeline=promo["pipeline"]).values_list("pk", "content_hash"))
    assert after == before
    return status


def test_a_missing_or_invalid_definition_fails_the_sync_and_writes_nothing(promo, origin, repository):
    origin.commit_graph("good")
    origin.push()
    assert sync(repository).versions_created == 1
    good = git_versions(promo["pipeline"])

    origin.commit("bad node", {DEFINITION: definition({**changed_graph("x"), "nodes": [{"id": "orders_src"}]})})
    origin.push()
    status = _broken(repository, promo, f"{DEFINITION} at ")
    assert "graph.nodes[orders_src]" in status.error or "orders_src" in status.error

    origin.commit("not yaml", {DEFINITION: "nodes: [unclosed\n"})
    origin.push()
    _broken(repository, promo, "YAML")

    origin.commit("gone", remove=[DEFINITION])
    origin.push()
    _broken(repository, promo, "the definition file is missing")
    assert git_versions(promo["pipeline"]) == good
    assert VersionSource.objects.count() == 1

    origin.commit_graph("fixed")
    origin.push()
    status = sync(repository)
    assert status.state == SyncState.OK and status.versions_created == 1  # the broken commits in between: skipped


def test_an_unreachable_remote_and_a_missing_branch(promo, origin, repository, tmp_path):
    services.repository_update(
        actor=promo["org_admin"], repository=repository, clone_url=f"file://{tmp_path}/nowhere.git"
    )
    _broken(repository, promo, "The remote is unreachable")
    services.repository_update(actor=promo["org_admin"], repository=repository, clone_url=origin.url)
    origin.commit_graph("a")
    origin.push()
    services.repository_update(actor=promo["org_admin"], repository=repository, default_branch="trunk")
    _broken(repository, promo, "no branch 'trunk'")


def test_a_second_sync_of_the_same_commits_stores_nothing_twice(promo, origin, repository):
    origin.commit_graph("a")
    origin.push()
    sync(repository)
    assert VersionSource.objects.filter(repository=repository).count() == 1
    sync(repository)
    assert VersionSource.objects.filter(repository=repository).count() == 1
