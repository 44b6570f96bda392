"""What the repository vouches for about a version's commit, and the Git gates of an approval rule.

The evidence is read from the bare mirror when it is asked for (at request, decision and deploy
time), never from fields anyone typed: a version without a VersionSource was made by hand, is
"not from Git" and passes no Git gate. `require_git` passes when the default branch or a tag
contains the commit; `allowed_refs` patterns are matched against the branches and tags that
really contain it. After a force-push that drops the commit, the evidence changes: the gate fails,
and the plan (whose hash covers the evidence) is stale."""

import fnmatch

from . import git
from .models import VersionSource

NOT_FROM_GIT = {"from_git": False, "detail": "not from Git"}


def _source_of(version) -> VersionSource | None:
    if not version.from_git:  # set with the VersionSource, in the sync's transaction: no query for hand-made ones
        return None
    try:
        return version.git_source
    except VersionSource.DoesNotExist:
        return None


def evidence(version) -> dict:
    """The repository's word on `version` now: commit, author, the branches and tags containing
    the commit, and whether the default branch does (`merged`)."""
    source = _source_of(version)
    if source is None:
        return dict(NOT_FROM_GIT)
    answer = {
        "from_git": True,
        "commit": source.commit,
        "branch": source.branch,
        "author": f"{source.author_name} <{source.author_email}>" if source.author_email else source.author_name,
        "message": source.message,
        "compare_url": source.compare_url,
        "branches": [],
        "tags": [],
        "merged": False,
    }
    repository = source.repository
    if repository is None:
        return {**answer, "detail": "its repository was removed"}
    try:
        refs = git.refs_containing(git.mirror_path(repository.pk), source.commit)
    except git.GitError as exc:
        return {**answer, "detail": f"the repository could not be read ({exc.kind})"}
    if refs is None:
        return {**answer, "detail": "the commit is no longer in the repository"}
    branches = sorted(r.removeprefix("refs/heads/") for r in refs if r.startswith("refs/heads/"))
    tags = sorted(r.removeprefix("refs/tags/") for r in refs if r.startswith("refs/tags/"))
    merged = repository.default_branch in branches
    detail = (
        f"merged into {repository.default_branch}"
        if merged
        else f"not in {repository.default_branch}" + (f"; tagged {', '.join(tags)}" if tags else "")
    )
    return {**answer, "branches": branches, "tags": tags, "merged": merged, "detail": detail}


def plan_view(version, deployed_version=None) -> dict:
    """The evidence as the plan shows it, with a compare link from what the target runs (when that
    came from the same repository) to this commit."""
    answer = evidence(version)
    if not answer["from_git"]:
        return answer
    source, running = _source_of(version), _source_of(deployed_version) if deployed_version else None
    if (
        source is not None
        and source.repository is not None
        and running is not None
        and running.repository_id == source.repository_id
    ):
        answer["compare_url"] = git.compare_url(source.repository.clone_url, running.commit, source.commit)
        answer["target_commit"] = running.commit
    return answer


def git_gates(found: dict, rule) -> list[dict]:
    """The rule's `require_git` and `allowed_refs` gates against the evidence."""
    gates = []
    commit = found.get("commit", "")[:10]
    if rule.require_git:
        ok = found["from_git"] and (found["merged"] or bool(found["tags"]))
        if not found["from_git"]:
            why = "a version from Git (this one was made by hand: not from Git)"
        elif ok:
            why = f"commit {commit}: {found['detail']}"
        else:
            why = f"commit {commit} merged into the default branch or tagged ({found['detail']})"
        gates.append({"gate": "git", "rule": rule.name, "passed": ok, "detail": why})
    if rule.allowed_refs:
        refs = [*found.get("branches", []), *found.get("tags", [])] if found["from_git"] else []
        ok = any(fnmatch.fnmatchcase(ref, pattern) for ref in refs for pattern in rule.allowed_refs)
        where = ", ".join(refs) or ("no branch or tag contains it" if found["from_git"] else "not from Git")
        gates.append(
            {
                "gate": "refs",
                "rule": rule.name,
                "passed": ok,
                "detail": f"a ref containing the commit matching {', '.join(rule.allowed_refs)} (found: {where})",
            }
        )
    return gates
