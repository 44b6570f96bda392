"""Resolution for callers: permission checks and the derived views (readiness, diff, matrix)."""

from collections.abc import Mapping
from typing import Any

from apps.core import crypto
from apps.core.errors import NotFound, PermissionDenied
from apps.core.types import User
from apps.environments import permissions as perms
from apps.environments.models import Environment
from apps.secrets import services as secret_services
from apps.secrets.models import Secret

from . import engine
from .answer import Answer, Problem

# What a side without the variable or connection reads as (never written to).
_ABSENT: Mapping[str, Any] = {}


def resolve_for(
    actor: User, pipeline, environment: Environment, *, version=None, parameters=None, as_of=None, revision=None
) -> Answer:
    """The redacted answer for a user who may view the environment (`revision`: the organization's
    configuration revision, when read with the pipeline and environment, see engine.resolve)."""
    _require_same_org(pipeline.project.organization_id, environment)
    perms.require(actor, perms.VIEW, environment)
    return engine.resolve(pipeline, environment, version=version, parameters=parameters, as_of=as_of, revision=revision)


def resolve_encoded_for(actor: User, pipeline, environment: Environment, *, version, revision: int, encode) -> bytes:
    """resolve_for's live answer as `encode(answer)` bytes (see engine.resolve_encoded)."""
    _require_same_org(pipeline.project.organization_id, environment)
    perms.require(actor, perms.VIEW, environment)
    return engine.resolve_encoded(pipeline, environment, version, revision, encode)


def resolve_for_executor(actor: User, pipeline, environment: Environment, *, version=None, parameters=None) -> Answer:
    """The answer with secrets materialized, for an executor acting for `actor`. Each secret goes
    through secrets.materialize (use_environment_credentials + the secret's allowed environments).
    The result must stay in the worker's memory: never stored, logged or returned to a user."""
    _require_same_org(pipeline.project.organization_id, environment)
    perms.require(actor, perms.USE_CREDENTIALS, environment)

    def materializer(ref):
        secret = Secret.objects.prefetch_related("allowed_environments").get(pk=ref.id)
        return secret_services.materialize(actor=actor, secret=secret, environment=environment, executor=True)

    return engine.resolve(pipeline, environment, version=version, parameters=parameters, materializer=materializer)


def _require_same_org(organization_id: int, environment: Environment) -> None:
    if environment.organization_id != organization_id:
        raise NotFound("No such environment in this pipeline's organization.")


def readiness(actor: User, pipeline, environment: Environment, *, version=None) -> dict:
    """What must still be set before the first run or promotion into a stage."""
    answer = resolve_for(actor, pipeline, environment, version=version)
    missing = [e for e in answer["errors"] if e["code"] == "missing_required"]
    unbound = [e for e in answer["errors"] if e["code"] in ("unbound_role", "unknown_role")]
    secrets = [e for e in answer["errors"] if e["code"] in ("secret_not_allowed", "secret_unavailable")]
    secrets += _undecryptable(answer, pipeline.project.organization_id)
    other = [
        e
        for e in answer["errors"]
        if e["code"]
        not in ("missing_required", "unbound_role", "unknown_role", "secret_not_allowed", "secret_unavailable")
    ]
    return {
        "environment": answer["environment"],
        "version": answer["version"],
        "ready": not (missing or unbound or secrets or other),
        "missing_variables": missing,
        "unbound_connections": unbound,
        "unresolvable_secrets": secrets,
        "other_errors": other,
        "config_revision": answer["config_revision"],
    }


def _undecryptable(answer: Answer, organization_id: int) -> list[Problem]:
    """Local secrets that no configured key decrypts (checked without keeping the value)."""
    names = engine.secret_references(answer)
    problems: list[Problem] = []
    for secret in Secret.objects.filter(organization_id=organization_id, name__in=names, provider="local"):
        try:
            crypto.decrypt(secret.ciphertext)
        except crypto.UndecryptableValue:
            problems.append(
                {
                    "code": "secret_undecryptable",
                    "path": f"secrets.{secret.name}",
                    "message": f"Secret '{secret.name}' cannot be decrypted with the configured keys.",
                }
            )
    return problems


def _comparable(entry: Mapping[str, Any]) -> object:
    return entry.get("secret") or entry.get("value")


ROWS_PER_PAGE = 100  # matrix and diff rows (variables) per page
MAX_ROWS_PER_PAGE = 500


def rows_page(names: list[str], page: int, page_size: int) -> tuple[list[str], dict]:
    """The `page`-th slice of sorted row names and the page's description. A page past the last is
    empty (its description says how many there are)."""
    count = len(names)
    start = (page - 1) * page_size
    shown = names[start : start + page_size]
    return shown, {"number": page, "size": page_size, "count": count, "pages": max(1, -(-count // page_size))}


def _missing_required(answer: Answer) -> set[str]:
    return {e["path"].removeprefix("variables.") for e in answer["errors"] if e["code"] == "missing_required"}


def environment_diff(
    actor: User, pipeline, left: Environment, right: Environment, *, version=None, page=1, page_size=ROWS_PER_PAGE
) -> dict:
    """Two environments side by side: the page's variables, every connection and policy value,
    differences flagged."""
    a = resolve_for(actor, pipeline, left, version=version)
    b = resolve_for(actor, pipeline, right, version=version)
    variables = {}
    names, page_info = rows_page(sorted(set(a["variables"]) | set(b["variables"])), page, page_size)
    for name in names:
        va, vb = a["variables"].get(name, _ABSENT), b["variables"].get(name, _ABSENT)
        variables[name] = {
            "left": _comparable(va),
            "left_source": va.get("source"),
            "right": _comparable(vb),
            "right_source": vb.get("source"),
            "differs": _comparable(va) != _comparable(vb),
        }
    connections = {}
    for name in sorted(set(a["connections"]) | set(b["connections"])):
        ca, cb = a["connections"].get(name, _ABSENT), b["connections"].get(name, _ABSENT)
        left_view = {"params": ca.get("params"), "credential": ca.get("credential")}
        right_view = {"params": cb.get("params"), "credential": cb.get("credential")}
        connections[name] = {"left": left_view, "right": right_view, "differs": left_view != right_view}
    policy = {
        name: {
            "left": a["policy"].get(name),
            "right": b["policy"].get(name),
            "differs": a["policy"].get(name) != b["policy"].get(name),
        }
        for name in sorted(set(a["policy"]) | set(b["policy"]))
    }
    return {
        "left": a["environment"],
        "right": b["environment"],
        "version": a["version"],
        "variables": variables,
        "page": page_info,
        "connections": connections,
        "policy": policy,
        "errors": {"left": a["errors"], "right": b["errors"]},
    }


def matrix(actor: User, project, *, page: int = 1, page_size: int = ROWS_PER_PAGE) -> dict:
    """Variables × environments (those the actor may view): effective value and source per cell,
    rows whose values differ flagged, missing required values flagged. Each environment is
    resolved once (a cached answer when nothing changed); cells are built for the page's rows only."""
    environments = list(
        perms.environments_where(actor, perms.VIEW, Environment.objects.filter(organization=project.organization_id))
        .select_related("policy")
        .order_by("position", "name")
    )
    if not environments:
        raise PermissionDenied("You may not view any environment of this project's organization.")
    columns = [{"id": e.pk, "slug": e.slug, "name": e.name, "kind": e.kind} for e in environments]
    answers = [engine.resolve(None, e, project=project) for e in environments]
    missing = [_missing_required(answer) for answer in answers]
    names, page_info = rows_page(sorted({name for answer in answers for name in answer["variables"]}), page, page_size)
    rows = {}
    for name in names:
        cells = []
        for environment, answer, missing_here in zip(environments, answers, missing, strict=True):
            entry = answer["variables"].get(name, _ABSENT)
            cells.append(
                {
                    "environment": environment.slug,
                    "value": _comparable(entry),
                    "source": entry.get("source"),
                    "missing_required": name in missing_here,
                }
            )
        values = {repr(c["value"]) for c in cells}
        rows[name] = {
            "type": answers[0]["variables"].get(name, _ABSENT).get("type"),
            "cells": cells,
            "differs": len(values) > 1,
        }
    connections = {}
    role_names = sorted({name for answer in answers for name in answer["connections"]})
    for name in role_names:
        connections[name] = [
            {
                "environment": environment.slug,
                **{
                    k: answer["connections"].get(name, _ABSENT).get(k)
                    for k in ("kind", "source", "params", "credential")
                },
            }
            for environment, answer in zip(environments, answers, strict=True)
        ]
    return {
        "project": {"id": project.pk, "slug": project.slug},
        "environments": columns,
        "variables": rows,
        "page": page_info,
        "connections": connections,
    }
