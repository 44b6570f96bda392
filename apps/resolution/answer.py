"""The shape of a resolution answer (what `engine.resolve` returns, the resolve API serves, plans
hash and deployments keep): typed dicts, so the type checker knows every key the engine writes.
At run time an answer is a plain dict (cached, JSON-encoded and compared as one)."""

from typing import Any, NotRequired, TypedDict


class Problem(TypedDict):
    """An error or warning: a stable code, the path it is about and a message naming no secret."""

    code: str
    path: str
    message: str


class ObjectRef(TypedDict):
    id: int
    slug: str


class EnvironmentRef(TypedDict):
    id: int
    slug: str
    kind: str


class VersionRef(TypedDict):
    id: int
    number: int
    content_hash: str


class ResolvedVariable(TypedDict):
    type: str
    scope: str
    # "parameter", "personal" (the asking or starting member's own value, development only),
    # "override:<scope>", "default:<scope>" or "unset" (None only while resolving)
    source: str | None
    value: Any  # None for a secret unless an executor materialized it
    secret: str | None  # "secret://<name>" for a secret, else None


class ResolvedConnection(TypedDict):
    kind: str
    role_scope: str  # "project" or "organization"
    source: str  # "binding" or "unbound"
    params: Any
    credential: str | None  # "secret://<name>"
    credential_value: NotRequired[Any]  # only in an executor's (never cached) answer


class ResolvedGraph(TypedDict):
    nodes: list[dict[str, Any]]
    edges: list[Any]


class Answer(TypedDict):
    pipeline: ObjectRef | None
    project: ObjectRef | None
    environment: EnvironmentRef
    version: VersionRef | None
    variables: dict[str, ResolvedVariable]
    connections: dict[str, ResolvedConnection]
    policy: dict[str, Any]
    graph: ResolvedGraph | None
    errors: list[Problem]
    warnings: list[Problem]
    redacted: bool
    # Set by `engine.resolve` on every answer it returns (not by the computation itself).
    as_of: NotRequired[str | None]
    config_revision: NotRequired[int | None]
    resolved_at: NotRequired[str]
