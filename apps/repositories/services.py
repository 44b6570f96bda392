"""Repositories: configure them (org owners and admins), sync them on the worker, take provider webhooks.

A sync fetches the remote into the bare mirror, then stores a PipelineVersion for each commit of
the default branch (first-parent line) and each tagged commit whose definition file changed the
pipeline, with a VersionSource row saying which commit it came from. A definition file missing or
invalid at the head of the default branch fails the sync as a whole: a clear error on the
repository, no version, the existing versions untouched."""

import json
import logging
import posixpath
import re
from urllib.parse import urlsplit

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.core import egress, signing
from apps.core.bounded_yaml import load_bounded
from apps.core.errors import Conflict, DomainError, PermissionDenied, ValidationFailed, field_error
from apps.core.services import audited_delete, audited_save, first_unlocked, refuse_unknown
from apps.core.signing import WebhookRefused
from apps.pipelines import graph as graphs
from apps.pipelines import services as pipeline_services
from apps.pipelines.models import Pipeline
from apps.secrets import masking
from apps.secrets import services as secret_services
from apps.secrets.models import Secret
from apps.tenancy.permissions import require_org_admin

from . import git
from .models import Repository, RepositorySync, SyncState, VersionSource, WebhookDelivery

logger = logging.getLogger("planasonix.repositories")

REPOSITORY_FIELDS = frozenset({"clone_url", "default_branch", "definition_path", "credential", "webhook_secret"})
DEFINITION_SUFFIXES = (".yaml", ".yml", ".json")
BRANCH = re.compile(r"^(?!-)(?!.*\.\.)(?!.*//)[A-Za-z0-9._/-]{1,255}(?<![./])$")
FAILURE_PREFIX = {
    "unreachable": "The remote is unreachable",
    "auth_failed": "Authentication failed (check the credential)",
    "timeout": "The fetch timed out",
    "git": "git failed",
}


# --- configuration ------------------------------------------------------------------------------------------------


def _require_admin(actor, pipeline: Pipeline) -> None:
    require_org_admin(actor, pipeline.project.organization, "configure repositories")


def check_clone_url(url, *, organization, connect: bool = False) -> str:
    """The clone URL, if the egress policy lets the worker fetch it (file:// only where settings allow)."""
    if not isinstance(url, str) or not url.strip() or "\x00" in url:
        raise field_error("clone_url", "Give the repository's clone URL.")
    url = url.strip()
    if git.is_file_url(url):
        if not settings.GIT_ALLOW_LOCAL_URLS:
            raise field_error(
                "clone_url", "file:// URLs are only allowed in development and tests (GIT_ALLOW_LOCAL_URLS)."
            )
        if not urlsplit(url).path.startswith("/"):
            raise field_error("clone_url", "A file:// URL names an absolute path.")
        return url
    if "://" in url and urlsplit(url).password is not None:
        raise field_error("clone_url", "Put no password or token in the URL; use the credential secret.")
    schemes = ("https", "ssh", "http") if settings.GIT_ALLOW_LOCAL_URLS else ("https", "ssh")
    egress.check_url(url, organization=organization, field="clone_url", schemes=schemes, connect=connect)
    return url


def _check_definition_path(path) -> str:
    if not isinstance(path, str) or not path.strip() or "\x00" in path:
        raise field_error("definition_path", "Give the definition file's path inside the repository.")
    path = path.strip()
    normalized = posixpath.normpath(path)
    if path.startswith("/") or normalized.startswith("..") or normalized != path:
        raise field_error("definition_path", "A relative path inside the repository, without '..' or './'.")
    if not path.lower().endswith(DEFINITION_SUFFIXES):
        raise field_error("definition_path", "A .yaml, .yml or .json file.")
    return path


def _check_branch(branch) -> str:
    if not isinstance(branch, str) or not BRANCH.fullmatch(branch):
        raise field_error("default_branch", "A branch name (letters, digits, . _ / -).")
    return branch


def _check_secret(secret, organization, field: str):
    if secret is not None and (not isinstance(secret, Secret) or secret.organization_id != organization.pk):
        raise field_error(field, "No such secret in this pipeline's organization.")
    return secret


def _apply(repository: Repository, changes: dict, organization) -> None:
    checks = {
        "clone_url": lambda v: check_clone_url(v, organization=organization),
        "default_branch": _check_branch,
        "definition_path": _check_definition_path,
        "credential": lambda v: _check_secret(v, organization, "credential"),
        "webhook_secret": lambda v: _check_secret(v, organization, "webhook_secret"),
    }
    for name, value in changes.items():
        setattr(repository, name, checks[name](value))


@transaction.atomic
def repository_create(
    *,
    actor,
    pipeline: Pipeline,
    clone_url: str,
    definition_path: str,
    default_branch: str = "main",
    credential: Secret | None = None,
    webhook_secret: Secret | None = None,
) -> Repository:
    """Make a Git remote the source of `pipeline`'s versions (one repository per pipeline)."""
    pipeline = Pipeline.objects.select_for_update().select_related("project__organization").get(pk=pipeline.pk)
    _require_admin(actor, pipeline)
    if Repository.objects.filter(pipeline=pipeline).exists():
        raise Conflict(f"'{pipeline}' already has a repository.", fields={"pipeline": ["Already has a repository."]})
    repository = Repository(pipeline=pipeline)
    changes = {
        "clone_url": clone_url,
        "definition_path": definition_path,
        "default_branch": default_branch,
        "credential": credential,
        "webhook_secret": webhook_secret,
    }
    _apply(repository, changes, pipeline.project.organization)
    audited_save(repository, actor=actor, reason="repository created")
    RepositorySync.objects.create(repository=repository)
    return repository


@transaction.atomic
def repository_update(*, actor, repository: Repository, **changes) -> Repository:
    repository = (
        Repository.objects.select_for_update().select_related("pipeline__project__organization").get(pk=repository.pk)
    )
    _require_admin(actor, repository.pipeline)
    refuse_unknown(changes, REPOSITORY_FIELDS, "Unknown field or not editable.")
    _apply(repository, changes, repository.pipeline.project.organization)
    audited_save(repository, actor=actor, reason="changed: " + ", ".join(sorted(changes)))
    return repository


@transaction.atomic
def repository_delete(*, actor, repository: Repository) -> None:
    """Stop syncing; the versions stay (and, their repository gone, pass no Git gate any more)."""
    _require_admin(actor, repository.pipeline)
    pk = repository.pk
    audited_delete(repository, actor=actor, reason="repository deleted")
    transaction.on_commit(lambda: _remove_mirror(pk), robust=True)


def _remove_mirror(pk: int) -> None:
    import shutil

    shutil.rmtree(git.mirror_path(pk), ignore_errors=True)


def repository_request_sync(*, repository: Repository) -> RepositorySync:
    """Ask the worker for a sync: the row's `requested_at` is the outbox, the task only the wake-up."""
    with transaction.atomic():
        status, _ = RepositorySync.objects.select_for_update().get_or_create(repository=repository)
        status.requested_at = timezone.now()
        status.save(update_fields=["requested_at"])
        transaction.on_commit(lambda: _enqueue_sync(repository.pk), robust=True)
    return status


def repository_sync_now(*, actor, repository: Repository) -> RepositorySync:
    """ "Sync now" for anyone who sees the repository (API, admin): queues a sync on the worker."""
    if not Repository.objects.restrict(actor).filter(pk=repository.pk).exists():
        raise PermissionDenied("You cannot see this repository.")
    return repository_request_sync(repository=repository)


def _enqueue_sync(pk: int) -> None:
    from .tasks import sync_repository

    try:
        sync_repository.apply_async(args=[pk])
    except Exception:  # broker down: requested_at stays set and the beat sweep syncs it
        logger.warning("could not enqueue the sync of repository %s; the sweep will", pk)


def repositories_sweep() -> int:
    """Beat: sync every repository (covers missed webhooks and lost tasks)."""
    pks = list(Repository.objects.order_by("pk").values_list("pk", flat=True)[:1000])
    for pk in pks:
        _enqueue_sync(pk)
    return len(pks)


# --- sync (the worker's job) ----------------------------------------------------------------------------------------


class SyncFailed(DomainError):
    """A sync could not complete; the message is what the repository shows."""


def repository_sync(repository_pk: int) -> RepositorySync | None:
    """Fetch and import (safe to run twice, and at once: the sync row is locked for the whole sync;
    a second worker finds it locked and leaves it to the first, which re-queues if asked meanwhile)."""
    try:
        RepositorySync.objects.get_or_create(repository_id=repository_pk)
    except IntegrityError:  # the repository is gone
        return None
    with transaction.atomic():
        syncs = RepositorySync.objects.filter(repository_id=repository_pk)
        status = first_unlocked(
            syncs.select_related("repository__pipeline__project__organization", "repository__credential")
        )
        if status is None:
            return None
        started = timezone.now()
        asked_at = status.requested_at
        repository = status.repository
        status.started_at = started
        try:
            with masking.SecretMasker() as masker, transaction.atomic():
                head, created = _sync(repository, masker)
        except SyncFailed as exc:
            status.state, status.error, status.versions_created = SyncState.FAILED, exc.message[:2000], 0
        else:
            status.state, status.error, status.head_commit, status.versions_created = SyncState.OK, "", head, created
        status.finished_at = timezone.now()
        if status.requested_at == asked_at:
            status.requested_at = None
        status.save()
        again = status.requested_at is not None
    if again:
        _enqueue_sync(repository_pk)
    return status


def _sync(repository: Repository, masker: masking.SecretMasker) -> tuple[str, int]:
    organization = repository.pipeline.project.organization
    try:
        check_clone_url(repository.clone_url, organization=organization, connect=True)
        credential = None
        secret = repository.credential if repository.credential_id else None
        if secret is not None:
            credential = secret_services.materialize_for_platform(secret=secret, purpose=f"credential '{secret.name}'")
            masker.add(credential, secret.name)
    except ValidationFailed as exc:
        raise SyncFailed(exc.message) from None
    try:
        mirror = git.fetch(repository.pk, repository.clone_url, credential)
    except git.GitError as exc:
        raise SyncFailed(f"{FAILURE_PREFIX[exc.kind]}: {masker.mask_text(exc.message)}") from None
    head = git.head_of(mirror, repository.default_branch)
    if head is None:
        raise SyncFailed(f"The remote has no branch '{repository.default_branch}'.")
    try:
        _definition_at(mirror, repository, head)  # a broken head fails the sync before anything is stored
        return head, _import(repository, mirror, head)
    except git.GitError as exc:
        raise SyncFailed(f"{FAILURE_PREFIX[exc.kind]}: {masker.mask_text(exc.message)}") from None


def _where(repository: Repository, sha: str) -> str:
    return f"{repository.definition_path} at {sha[:10]}"


def _definition_at(mirror, repository: Repository, sha: str) -> dict:
    """The validated graph in the definition file at `sha`; SyncFailed naming the file, the commit
    and (as graph validation does) the node and field."""
    raw = git.read_file(mirror, sha, repository.definition_path)
    if raw is None:
        raise SyncFailed(f"{_where(repository, sha)}: the definition file is missing.")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SyncFailed(f"{_where(repository, sha)}: not UTF-8 text.") from None
    try:
        if repository.definition_path.lower().endswith(".json"):
            graph = json.loads(text)
        else:
            graph = load_bounded(text)
    except ValueError as exc:
        raise SyncFailed(f"{_where(repository, sha)}: not valid JSON ({exc}).") from None
    except ValidationFailed as exc:
        detail = " ".join(" ".join(exc.fields.get("document", [])).split())
        summary = exc.message.removeprefix("document: ").rstrip(".")
        raise SyncFailed(f"{_where(repository, sha)}: {summary}" + (f": {detail[:300]}" if detail else ".")) from None
    try:
        graphs.validate_graph(graph)
        for check in pipeline_services.version_checks:
            check(repository.pipeline, graph)
    except ValidationFailed as exc:
        raise SyncFailed(f"{_where(repository, sha)}: {exc.message}") from None
    return graph


def _import(repository: Repository, mirror, head: str) -> int:
    """Store a version for each changed commit not imported yet; returns how many."""
    branch_commits = git.commits_touching(mirror, repository.default_branch, repository.definition_path)
    on_branch = set(branch_commits)
    tags_at: dict[str, list[str]] = {}
    for name, sha in sorted(git.tags(mirror).items()):
        tags_at.setdefault(sha, []).append(name)
    tag_only = [sha for sha in tags_at if sha not in on_branch]
    tag_only.sort(key=lambda sha: git.commit_info(mirror, sha).committed_at)
    seen = set(
        VersionSource.objects.filter(repository=repository, commit__in=branch_commits + tag_only).values_list(
            "commit", flat=True
        )
    )
    last = VersionSource.objects.filter(repository=repository).select_related("version").order_by("-version__number")
    previous = last.first()
    created = 0
    for sha in branch_commits + tag_only:
        if sha in seen:
            continue
        try:
            graph = _definition_at(mirror, repository, sha)
        except SyncFailed:
            continue  # an older commit that was broken: the head is what must be valid
        if previous is not None and previous.version.content_hash == graphs.content_hash(graph):
            continue
        previous = _store(
            repository,
            mirror,
            sha,
            graph,
            branch=repository.default_branch if sha in on_branch else "",
            tags=tags_at.get(sha, []),
            previous=previous,
        )
        created += 1
    return created


def _store(repository: Repository, mirror, sha: str, graph: dict, *, branch: str, tags: list[str], previous):
    info = git.commit_info(mirror, sha)
    compare = git.compare_url(repository.clone_url, previous.commit if previous else None, sha)
    version = pipeline_services.pipeline_version_record(
        pipeline=repository.pipeline,
        graph=graph,
        message=info.subject[:500],
        git_repository=repository.clone_url,
        git_commit=sha,
        git_branch=branch,
        git_tag=tags[0] if tags else "",
        git_merged=bool(branch),
        compare_url=compare,
    )
    return VersionSource.objects.create(
        version=version,
        repository=repository,
        commit=sha,
        author_name=info.author_name[:255],
        author_email=info.author_email[:255],
        committed_at=info.committed_at,
        message=info.subject[:500],
        branch=branch,
        tags=tags,
        compare_url=compare,
    )


# --- provider webhooks --------------------------------------------------------------------------------------------


def _signing_key(repository: Repository | None) -> str:
    secret = repository.webhook_secret if repository is not None and repository.webhook_secret_id else None
    if secret is None:
        raise WebhookRefused("This repository takes no webhooks (no webhook secret).")
    try:
        return secret_services.materialize_for_platform(secret=secret, purpose="webhook secret")
    except ValidationFailed:
        raise WebhookRefused("The webhook secret cannot be read.") from None


def _verify(repository: Repository | None, headers, body: bytes) -> tuple[str, str, str]:
    """(provider, delivery id, event) of a delivery whose signature or token matches, in constant time."""
    signature = headers.get("X-Hub-Signature-256")
    token = headers.get("X-Gitlab-Token")
    if signature is None and token is None:
        raise WebhookRefused("Sign the delivery (X-Hub-Signature-256) or send the token (X-Gitlab-Token).")
    key = _signing_key(repository)
    if signature is not None:
        if not signing.matches(signing.body_signature(key, body), signature):
            raise WebhookRefused("The signature does not match.")
        return "github", headers.get("X-GitHub-Delivery", ""), headers.get("X-GitHub-Event", "")
    if not signing.matches(key, token):
        raise WebhookRefused("The token does not match.")
    delivery = headers.get("X-Gitlab-Event-UUID") or headers.get("X-Gitlab-Webhook-UUID") or ""
    return "gitlab", delivery, headers.get("X-Gitlab-Event", "")


SYNC_EVENTS = {"github": {"push", "create"}, "gitlab": {"Push Hook", "Tag Push Hook"}}


def webhook_receive(*, repository_pk: int, headers, body: bytes) -> str:
    """Verify a provider's delivery and queue a sync. Returns "queued", "ignored" (an event that
    changes no ref, e.g. GitHub's ping) or "duplicate" (a replayed delivery id: nothing queued)."""
    repository = Repository.objects.select_related("webhook_secret").filter(pk=repository_pk).first()
    provider, delivery, event = _verify(repository, headers, body)
    if repository is None:  # _verify refused it already (no webhook secret); this narrows the type
        raise WebhookRefused("This repository takes no webhooks (no webhook secret).")
    if not delivery or len(delivery) > 200:
        raise field_error("delivery", "The delivery id header (X-GitHub-Delivery, X-Gitlab-Event-UUID) is missing.")
    if event not in SYNC_EVENTS[provider]:
        return "ignored"
    if not signing.accept_once(
        lambda: WebhookDelivery.objects.create(
            repository=repository, provider=provider, delivery_id=delivery, event=event
        )
    ):
        return "duplicate"
    repository_request_sync(repository=repository)
    return "queued"
