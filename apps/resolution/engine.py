"""The layering engine: what a pipeline resolves to in an environment, with provenance.

Precedence, highest first (DESIGN.md §5): run parameter (when the variable and the policy allow
run-time overrides) > the starting member's personal value (development only) > pipeline override >
project override > organization override > pipeline default > project default > organization
default. An environment's value always beats a default.
"""

import hashlib
import json
from typing import Any

from django.core.cache import cache
from django.utils import timezone

from apps.connections.models import ConnectionRole
from apps.connections.schemas import validate_params
from apps.connections.targets import check_params
from apps.core.errors import ValidationFailed
from apps.environments.models import POLICY_SETTINGS, Environment
from apps.pipelines import graph as graphs
from apps.pipelines.models import Pipeline, PipelineVersion
from apps.tenancy import revisions
from apps.variables import validation
from apps.variables.models import VariableType
from apps.variables.selectors import PersonalValue, personal_for

from . import cache_stats
from .answer import Answer, Problem, ResolvedConnection, ResolvedGraph, ResolvedVariable
from .interpolation import InterpolationError, Interpolator, SecretInterpolation, references
from .snapshot import SecretRef, Snapshot, load_as_of, load_live

SCOPE_RANK = {"pipeline": 0, "project": 1, "organization": 2}
POLICY_FIELDS = POLICY_SETTINGS
CACHE_SECONDS = 3600


def _secret_ref(secret) -> str:
    return f"secret://{secret.name}"


def secret_references(answer: Answer | None) -> set[str]:
    """Names of the secrets a (redacted) answer references, as variables or as credentials."""
    if not answer:
        return set()
    refs = [v.get("secret") for v in answer.get("variables", {}).values()]
    refs += [c.get("credential") for c in answer.get("connections", {}).values()]
    return {ref.removeprefix("secret://") for ref in refs if isinstance(ref, str)}


class _Result:
    def __init__(self):
        self.errors: list[Problem] = []
        self.warnings: list[Problem] = []

    def error(self, code: str, path: str, message: str):
        self.errors.append({"code": code, "path": path, "message": message})

    def warn(self, code: str, path: str, message: str):
        self.warnings.append({"code": code, "path": path, "message": message})


OVERRIDE_SOURCE = {scope: f"override:{scope}" for scope in SCOPE_RANK}
DEFAULT_SOURCE = {scope: f"default:{scope}" for scope in SCOPE_RANK}
PERSONAL_SOURCE = "personal"


def _layers(snap: Snapshot) -> dict[str, tuple[list, tuple | None]]:
    """The one place where layers are assembled: name -> (definitions most specific first, the
    winning candidate (source, definition, override) or None when nothing sets a value)."""
    by_name: dict[str, list] = {}
    for variable in snap.definitions:
        definitions = by_name.get(variable.name)
        if definitions is None:
            by_name[variable.name] = [variable]
        else:
            definitions.append(variable)
    overrides = snap.overrides
    layered = {}
    for name, definitions in by_name.items():
        if len(definitions) > 1:
            definitions.sort(key=lambda v: SCOPE_RANK[v.scope])
            layered[name] = (definitions, _winner(definitions, overrides))
            continue
        # One definition (nearly every variable): _winner's answer without the call.
        variable = definitions[0]
        override = overrides.get(variable.id)
        if override is not None:
            layered[name] = (definitions, (OVERRIDE_SOURCE[variable.scope], variable, override))
        elif variable.default_value is not None or variable.default_secret_id is not None:
            layered[name] = (definitions, (DEFAULT_SOURCE[variable.scope], variable, None))
        else:
            layered[name] = (definitions, None)
    return layered


def _winner(definitions: list, overrides: dict) -> tuple | None:
    """The highest-precedence candidate: this environment's override of the most specific
    definition that has one, else the most specific default."""
    for variable in definitions:
        override = overrides.get(variable.id)
        if override is not None:
            return OVERRIDE_SOURCE[variable.scope], variable, override
    for variable in definitions:
        if variable.default_value is not None or variable.default_secret_id is not None:
            return DEFAULT_SOURCE[variable.scope], variable, None
    return None


def _params_key(parameters) -> str:
    return hashlib.sha256(json.dumps(parameters or {}, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _personal_key(user, personal: dict[int, PersonalValue]) -> str:
    """'' when no personal value applies (the answer is everyone's); else the member and their values,
    so a personal answer is never served to anyone else and changes when their values do."""
    if not personal:
        return ""
    rows = sorted((pk, p.value, p.secret_id, p.secret_allowed) for pk, p in personal.items())
    return f":user{user.pk}:{_params_key(rows)}"


def cache_key(pipeline_id, environment_id, version_id, revision, parameters, project_id=None, personal="") -> str:
    return (
        f"resolve:v1:{project_id}:{pipeline_id}:{environment_id}:{version_id}:{revision}:{_params_key(parameters)}"
        + personal
    )


def resolve(
    pipeline: Pipeline | None,
    environment: Environment,
    version: PipelineVersion | None = None,
    parameters: dict | None = None,
    as_of=None,
    *,
    project=None,
    materializer=None,
    use_cache: bool = True,
    revision: int | None = None,
    personal_user=None,
) -> Answer:
    """Resolve every variable, connection binding and policy value for `environment`.

    Secrets are redacted to references; `materializer(secret) -> str` (given only by executors,
    see apps.resolution.services.resolve_for_executor) fills in values, and such answers are never
    cached. With `pipeline=None` and a `project`, resolves the project's variables (the matrix).
    `revision`: the organization's configuration revision, when the caller read it with its own rows.
    `personal_user`: the member whose personal overrides apply (only in a development environment,
    only to a live answer); callers pass the member who starts the run or preview, or who asks."""
    project = pipeline.project if pipeline is not None else project
    organization_id = environment.organization_id
    if project is not None and project.organization_id != organization_id:
        raise ValidationFailed("environment: belongs to another organization.", fields={"environment": ["Wrong org."]})
    if pipeline is not None and version is None and as_of is None:
        version = pipeline.versions.order_by("-number").first()
    if pipeline is not None and version is None and as_of is not None:
        version = pipeline.versions.filter(created_at__lte=as_of).order_by("-number").first()
    cacheable = use_cache and as_of is None and materializer is None
    personal = personal_for(personal_user, environment) if as_of is None else {}
    key = None
    if as_of is not None:
        revision = None  # an answer rebuilt from history has no live revision
    elif revision is None:
        revision = revisions.current(organization_id)
    if cacheable:
        key = cache_key(
            pipeline.pk if pipeline else None,
            environment.pk,
            version.pk if version else None,
            revision,
            parameters,
            project.pk if project else None,
            _personal_key(personal_user, personal),
        )
        hit = cache_stats.get(key)
        if hit is not None:
            return hit
    loader_args: dict[str, Any] = {
        "organization_id": organization_id,
        "project_id": project.pk if project else None,
        "pipeline_id": pipeline.pk if pipeline else None,
        "environment": environment,
    }
    if as_of is not None:
        snap = load_as_of(at=as_of, **loader_args)
    elif use_cache:
        snap = _cached_snapshot(revision, loader_args)
    else:
        snap = load_live(**loader_args)
    answer = _compute(pipeline, project, environment, version, parameters or {}, snap, materializer, personal)
    answer["as_of"] = as_of.isoformat() if as_of is not None else None
    answer["config_revision"] = revision
    answer["resolved_at"] = timezone.now().isoformat()
    if cacheable:
        cache.set(key, answer, CACHE_SECONDS)
    return answer


def resolve_encoded(
    pipeline: Pipeline, environment: Environment, version, revision: int, encode, personal_user=None
) -> bytes:
    """The live redacted answer as `encode(answer)` bytes (the API's JSON), cached beside the answer
    under the same key (so every write that makes the answer stale makes these stale too): a warm
    request serves the bytes without decoding and re-encoding the answer. `version`: the one to
    resolve (None: the pipeline has none); `revision`: read with the pipeline and environment;
    `personal_user`: as in resolve (an answer with personal values is the member's own: it is
    encoded from resolve's answer, whose key names them, and never stored as the shared bytes)."""
    if personal_for(personal_user, environment):
        return encode(resolve(pipeline, environment, version=version, revision=revision, personal_user=personal_user))
    key = cache_key(pipeline.pk, environment.pk, version.pk if version else None, revision, None, pipeline.project_id)
    key = f"{key}:encoded"
    body = cache_stats.get(key, count_miss=False)  # a miss is counted by resolve below
    if body is not None:
        return body
    body = encode(resolve(pipeline, environment, version=version, revision=revision))  # counts hit or miss
    cache.set(key, body, CACHE_SECONDS)
    return body


def _cached_snapshot(revision, loader_args: dict) -> Snapshot:
    """The environment's live rows, cached under the configuration revision (which every write bumps):
    a resolve of another version, with run parameters or by an executor loads no rows again. The
    snapshot holds secret names and ids only, never a value, so it is safe to cache."""
    key = (
        f"snapshot:v2:{loader_args['organization_id']}:{loader_args['project_id']}:{loader_args['pipeline_id']}:"
        f"{loader_args['environment'].pk}:{revision}"
    )
    snap = cache.get(key)
    if snap is None:
        snap = load_live(**loader_args)
        cache.set(key, snap, CACHE_SECONDS)
    return snap


def _compute(
    pipeline, project, environment, version, parameters, snap: Snapshot, materializer, personal: dict
) -> Answer:
    result = _Result()
    policy = snap.policy
    layered = _layers(snap)
    allow_params = bool(policy and policy.allow_runtime_overrides)

    for name in sorted(set(parameters) - set(layered)):
        result.error("unknown_parameter", f"parameters.{name}", f"No variable named '{name}' to override.")

    variables: dict[str, ResolvedVariable] = {}
    secrets = snap.secrets
    secret_type = VariableType.SECRET.value  # a plain str: compared once per variable
    for name in sorted(layered):
        definitions, winner = layered[name]
        top = definitions[0]
        if len(definitions) > 1 and len(types := {d.type for d in definitions}) > 1:
            result.error("type_mismatch", f"variables.{name}", f"'{name}' is defined with types {sorted(types)}.")
        source, scope, value, secret_ref = None, top.scope, None, None
        if parameters and name in parameters:
            source, value = _parameter(top, name, parameters[name], allow_params, result)
        if source is None and personal:
            mine = _personal(name, definitions, personal, environment, result, materializer)
            if mine is not None:
                source, (scope, value, secret_ref) = PERSONAL_SOURCE, mine
        if source is None and winner is not None:
            source, variable, override = winner
            scope = variable.scope
            secret = None
            if top.type == secret_type:
                secret = secrets.get(override.secret_id if override else variable.default_secret_id)
            if secret is not None:
                secret_ref = _secret_ref(secret)
                allowed = secret.id in snap.allowed_secret_ids
                value = _secret_value(secret, allowed, environment, result, f"variables.{name}", materializer)
            else:
                value = override.value if override else variable.default_value
        if source is None:
            source = "unset"
            if top.required_in and environment.kind in top.required_in:
                result.error(
                    "missing_required",
                    f"variables.{name}",
                    f"'{name}' must have a value in {environment.kind} environments; "
                    f"none is set for '{environment.slug}'.",
                )
        variables[name] = {"type": top.type, "scope": scope, "source": source, "value": value, "secret": secret_ref}

    expanded: dict[str, object] = {}  # name -> its value before interpolation, for those expanded

    def lookup(name):
        entry = variables.get(name)
        if entry is None:
            return False, None, False
        # By type, not by value: an unset secret, or one this environment may not use, is refused too.
        if entry["type"] == secret_type:
            return True, None, True
        return True, expanded.get(name, entry["value"]), False

    interpolator = Interpolator(lookup)
    for name, entry in variables.items():
        value = entry["value"]
        if (value.__class__ is str and "{{" not in value) or entry["secret"] is not None:
            continue  # the common case: nothing to interpolate
        if isinstance(value, str | list | dict):
            try:
                new_value = interpolator.expand_value(value, [name])
                expanded[name] = value
                entry["value"] = new_value
            except InterpolationError as exc:
                result.error(exc.code, f"variables.{name}", str(exc))

    connections = _connections(snap, environment, interpolator, result, materializer)
    graph = None
    if version is not None:
        secret_names = {name for name, entry in variables.items() if entry["type"] == secret_type}
        graph = _graph(version.graph, interpolator, connections, result, secret_names)
    return {
        "pipeline": {"id": pipeline.pk, "slug": pipeline.slug} if pipeline else None,
        "project": {"id": project.pk, "slug": project.slug} if project else None,
        "environment": {"id": environment.pk, "slug": environment.slug, "kind": environment.kind},
        "version": {"id": version.pk, "number": version.number, "content_hash": version.content_hash}
        if version
        else None,
        "variables": variables,
        "connections": connections,
        "policy": _policy(policy),
        "graph": graph,
        "errors": result.errors,
        "warnings": result.warnings,
        "redacted": materializer is None,
    }


def _coerce(top, value, field: str):
    """`value` checked against the definition's type and validation (as an override's value is)."""
    return validation.coerce(
        top.type,
        value,
        field=field,
        choices=top.choices,
        regex=top.regex,
        min_value=top.min_value,
        max_value=top.max_value,
    )


def _parameter(top, name: str, given, allow_params: bool, result: _Result) -> tuple[str | None, object]:
    """("parameter", the coerced value) for a run parameter the policy and the variable allow, else
    (None, None) with the error recorded."""
    if not (allow_params and top.allow_runtime_override):
        why = "the environment's policy" if not allow_params else f"variable '{name}'"
        result.error("override_not_allowed", f"parameters.{name}", f"Run-time overrides are refused by {why}.")
    elif top.type == VariableType.SECRET:
        result.error("override_not_allowed", f"parameters.{name}", "Secrets cannot be run parameters.")
    else:
        try:
            return "parameter", _coerce(top, given, f"parameters.{name}")
        except ValidationFailed as exc:
            result.error("invalid_parameter", f"parameters.{name}", exc.message)
    return None, None


def _personal(name: str, definitions: list, personal: dict, environment, result: _Result, materializer):
    """(scope, value, secret reference) of the member's personal value for `name` (on the most specific
    definition that has one), or None when they have none that fits."""
    top = definitions[0]
    found = next(((d, personal[d.id]) for d in definitions if d.id in personal), None)
    if found is None or not _personal_applies(top, found[1], result, name):
        return None
    definition, mine = found
    if mine.secret_id is None:
        return definition.scope, mine.value, None
    secret = SecretRef(mine.secret_id, mine.secret_name or "")
    value = _secret_value(secret, mine.secret_allowed, environment, result, f"variables.{name}", materializer)
    return definition.scope, value, _secret_ref(secret)


def _personal_applies(top, mine: PersonalValue, result: _Result, name: str) -> bool:
    """Whether a personal value still fits the (most specific) definition: it was checked when set,
    but the definition may have changed since. One that no longer fits is skipped with a warning and
    the shared value applies."""
    if (top.type == VariableType.SECRET) != (mine.secret_id is not None):
        result.warn(
            "personal_ignored", f"variables.{name}", f"Your personal value of '{name}' no longer fits its type."
        )
        return False
    if mine.secret_id is not None:
        return True
    try:
        _coerce(top, mine.value, f"variables.{name}")
    except ValidationFailed as exc:
        result.warn("personal_ignored", f"variables.{name}", f"Your personal value is skipped: {exc.message}")
        return False
    return True


def config_view(answer: Answer) -> dict:
    """The parts of a (redacted) resolution that approvers review, plans hash and a deployment keeps."""
    return {
        "variables": {
            name: {
                "value": entry["secret"] or entry["value"],
                "source": entry["source"],
                "secret": bool(entry["secret"]),
            }
            for name, entry in sorted(answer["variables"].items())
        },
        "connections": {
            name: {"kind": entry["kind"], "params": entry["params"], "credential": entry["credential"]}
            for name, entry in sorted(answer["connections"].items())
        },
        "policy": answer["policy"],
        "graph": answer["graph"],
    }


def _secret_value(secret, allowed: bool, environment, result: _Result, path: str, materializer):
    if not allowed:
        result.error(
            "secret_not_allowed", path, f"Secret '{secret.name}' is not allowed in environment '{environment.slug}'."
        )
        return None
    if materializer is None:
        return None
    try:
        return materializer(secret)
    except Exception as exc:  # provider failure: report the kind of failure, never the value
        result.error("secret_unavailable", path, f"Secret '{secret.name}' could not be read: {type(exc).__name__}.")
        return None


def _connections(
    snap: Snapshot, environment, interpolator: Interpolator, result: _Result, materializer
) -> dict[str, ResolvedConnection]:
    roles: dict[str, ConnectionRole] = {}
    for role in sorted(snap.roles, key=lambda r: (r.project_id is None, r.name)):
        roles.setdefault(role.name, role)  # a project's role shadows the organization's
    out = {}
    for name, role in sorted(roles.items()):
        binding = snap.bindings.get(role.pk)
        entry: ResolvedConnection = {
            "kind": role.kind,
            "role_scope": "project" if role.project_id else "organization",
            "source": "binding" if binding else "unbound",
            "params": None,
            "credential": None,
        }
        if binding is None:
            if environment.kind in (role.required_in or []):
                result.error("unbound_role", f"connections.{name}", f"'{name}' has no binding in '{environment.slug}'.")
        else:
            try:
                params = interpolator.expand_value(binding.params, [f"connections.{name}"])
                validate_params(role.kind, params, resolved=True)
                check_params(role.kind, params, environment=environment, dns=False)
                entry["params"] = params
            except InterpolationError as exc:
                result.error(exc.code, f"connections.{name}.params", str(exc))
                entry["params"] = binding.params
            except ValidationFailed as exc:
                result.error("invalid_params", f"connections.{name}.params", exc.message)
                entry["params"] = binding.params
            credential = snap.secrets.get(binding.credential_id)
            if credential is not None:
                entry["credential"] = _secret_ref(credential)
                value = _secret_value(
                    credential,
                    credential.id in snap.allowed_secret_ids,
                    environment,
                    result,
                    f"connections.{name}.credential",
                    materializer,
                )
                if materializer is not None:
                    entry["credential_value"] = value
        out[name] = entry
    return out


def _graph(
    graph: dict, interpolator: Interpolator, connections: dict, result: _Result, secret_names: set
) -> ResolvedGraph:
    nodes = []
    for node in graph.get("nodes", []):
        node = dict(node)
        label = f"graph.nodes[{node.get('id')}]"
        interpolated = set(graphs.interpolated_fields(node))
        for field, text in graphs.text_fields(node):
            try:
                # Text that is not interpolated (descriptions) must not name a secret either.
                named = next((n for n in references(text) if n in secret_names), None)
                if named is not None:
                    raise SecretInterpolation(named, [f"{node.get('id')}.{field}"])
                if field in interpolated:
                    node[field] = interpolator.expand_text(node[field], [f"{node.get('id')}.{field}"])
            except SecretInterpolation as exc:
                message = f"Node '{node.get('id')}', field '{field}': {exc}."
                result.error(exc.code, f"{label}.{field}", message)
            except InterpolationError as exc:
                result.error(exc.code, f"{label}.{field}", str(exc))
        role = node.get("connection")
        if role is not None:
            if role not in connections:
                result.error("unknown_role", f"{label}.connection", f"No connection role named '{role}'.")
            elif connections[role]["source"] == "unbound":
                result.error("unbound_role", f"{label}.connection", f"Connection role '{role}' is not bound here.")
        nodes.append(node)
    return {"nodes": nodes, "edges": graph.get("edges", [])}


def _policy(policy) -> dict:
    if policy is None:
        return {}
    out = {}
    for name in POLICY_FIELDS:
        value = getattr(policy, name)
        out[name] = str(value) if name == "sample_percent" and value is not None else value
    return out
