"""Git gates against a real repository: `require_git` passes only for commits the default branch or
a tag contains, `allowed_refs` only for refs that really contain the commit, a hand-made version
never passes (whatever its typed-in fields say), and a force-push that drops the commit fails the
gate and makes the plan stale, at decision time and at deploy time."""

import pytest

from apps.approvals import services as approvals
from apps.approvals.models import PromotionState
from apps.core.errors import Conflict, ValidationFailed
from apps.pipelines.models import PipelineVersion
from tests.approvals.service_helpers import approve, execute, new_version, request, run_ok, set_rule

from .conftest import sync

pytestmark = pytest.mark.django_db


def from_git(promo, origin, repository, marker: str, *, push=("main",)) -> PipelineVersion:
    sha = origin.commit_graph(marker)
    origin.push(*push)
    assert sync(repository).state == "ok"
    version = PipelineVersion.objects.get(pipeline=promo["pipeline"], git_commit=sha)
    run_ok(promo, "development", version=version)
    return version


def gate(promotion, name: str) -> dict:
    return next(g for g in promotion.plan["gates"] if g["gate"] == name)


def refused(promo, version) -> str:
    with pytest.raises(ValidationFailed) as err:
        request(promo, version=version)
    assert list(err.value.fields) == ["version"]
    return " ".join(err.value.fields["version"])


def test_require_git_passes_for_merged_and_tagged_commits_only(promo, origin, repository):
    set_rule(promo, "staging_rule", require_git=True)
    merged = from_git(promo, origin, repository, "merged")
    promotion = request(promo, version=merged)
    assert gate(promotion, "git")["passed"]
    shown = promotion.plan["version"]["git"]
    assert shown["from_git"] and shown["merged"] and shown["branches"] == ["main"]
    assert (shown["commit"], shown["author"], shown["branch"]) == (
        merged.git_commit,
        "Ada Lovelace <ada@example.com>",
        "main",
    )

    # A commit on a side branch, tagged: from Git, not merged, but tagged.
    origin.git("checkout", "--quiet", "-b", "side")
    origin.commit_graph("side")
    origin.git("tag", "v9.0")
    origin.push("side", "v9.0")
    sync(repository)
    tagged = PipelineVersion.objects.get(pipeline=promo["pipeline"], git_tag="v9.0")
    run_ok(promo, "development", version=tagged)
    promotion = request(promo, version=tagged)
    assert gate(promotion, "git")["passed"]
    approvals.promotion_cancel(actor=promo["developer"], request=promotion)

    # The tag is deleted: the commit is in no default branch and no tag any more.
    origin.git("push", "--quiet", "origin", ":refs/tags/v9.0")
    sync(repository)
    assert "merged into the default branch or tagged" in refused(promo, tagged)


def test_a_hand_made_version_never_passes_a_git_gate(promo):
    set_rule(promo, "staging_rule", require_git=True, allowed_refs=["main", "v*"])
    typed = new_version(promo, git_commit="abcdef1", git_branch="main", git_tag="v1.0", git_merged=True)
    run_ok(promo, "development", version=typed)
    text = refused(promo, typed)
    assert "not from Git" in text


def test_allowed_refs_match_the_refs_that_contain_the_commit(promo, origin, repository):
    set_rule(promo, "staging_rule", allowed_refs=["release/*", "v*"])
    version = from_git(promo, origin, repository, "a")
    assert "found: main" in refused(promo, version)
    origin.git("branch", "release/1")  # a release branch containing the commit
    origin.push("release/1")
    sync(repository)
    promotion = request(promo, version=version)
    assert gate(promotion, "refs")["passed"]
    approvals.promotion_cancel(actor=promo["developer"], request=promotion)

    later = from_git(promo, origin, repository, "b")  # main moved on; release/1 does not contain it
    assert "found: main" in refused(promo, later)
    origin.git("tag", "v2.0")
    origin.push("v2.0")
    sync(repository)
    assert gate(request(promo, version=later), "refs")["passed"]


def _force_push_away(origin, repository) -> None:
    origin.git("reset", "--quiet", "--hard", "HEAD~1")
    origin.push(force=True)
    assert sync(repository).state == "ok"


def test_a_force_push_fails_the_gate_and_stales_the_plan_at_decision_time(promo, origin, repository):
    set_rule(promo, "staging_rule", require_git=True)
    from_git(promo, origin, repository, "kept")
    dropped = from_git(promo, origin, repository, "dropped")
    promotion = request(promo, version=dropped)
    _force_push_away(origin, repository)

    with pytest.raises(Conflict) as err:
        approvals.promotion_approve(actor=promo["staging_approver"], request=promotion)
    assert err.value.code == "plan_changed"
    promotion.refresh_from_db()
    assert not gate(promotion, "git")["passed"]
    assert promotion.plan["version"]["git"]["branches"] == []
    with pytest.raises(Conflict) as err:
        approvals.promotion_approve(actor=promo["staging_approver"], request=promotion)
    assert err.value.code == "gate_failed"
    answer = approvals.promotion_actions(promo["staging_approver"], promotion)["approve"]
    assert not answer.allowed and "merged into the default branch or tagged" in answer.reasons[0]
    assert promotion.decisions.count() == 0


def test_a_force_push_after_approval_stops_the_deploy(promo, origin, repository):
    set_rule(promo, "staging_rule", require_git=True)
    from_git(promo, origin, repository, "kept")
    dropped = from_git(promo, origin, repository, "dropped")
    promotion = approve(request(promo, version=dropped), promo["staging_approver"])
    assert promotion.state == PromotionState.APPROVED
    _force_push_away(origin, repository)
    promotion = execute(promotion)
    assert promotion.state == PromotionState.PENDING  # the plan changed: approvers look again
    assert not gate(promotion, "git")["passed"]
    assert not promotion.target.deployments.filter(version=dropped).exists()
