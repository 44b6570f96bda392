"""The pipeline graph format: one registry of node types shared by the validator and (later) the
executor, validation with errors that name the node and field, canonical hashing, and the diff."""

import hashlib
import json
import re
from dataclasses import dataclass, field

from apps.core.errors import ValidationFailed
from apps.pipelines import expectations

NODE_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
MAX_NODES = 500
MAX_TEXT = 100_000


@dataclass(frozen=True)
class FieldSpec:
    kind: type | tuple
    required: bool = True
    choices: tuple = ()
    interpolated: bool = False  # a text field where {{ variable }} is substituted


@dataclass(frozen=True)
class NodeType:
    name: str
    fields: dict[str, FieldSpec] = field(default_factory=dict)
    reads: bool = False
    writes: bool = False


REGISTRY: dict[str, NodeType] = {}


def register(node_type: NodeType) -> None:
    REGISTRY[node_type.name] = node_type


register(
    NodeType(
        "source",
        {
            "connection": FieldSpec(str),
            "query": FieldSpec(str, interpolated=True),
            "description": FieldSpec(str, required=False),
        },
        reads=True,
    )
)
register(
    NodeType(
        "destination",
        {
            "connection": FieldSpec(str),
            "table": FieldSpec(str, interpolated=True),
            "mode": FieldSpec(str, required=False, choices=("replace", "append")),
            "key": FieldSpec(list, required=False),
            "expectations": FieldSpec(dict, required=False),  # apps.pipelines.expectations
            "description": FieldSpec(str, required=False),
        },
        writes=True,
    )
)


def _error(errors: dict, name: str, message: str) -> None:
    errors.setdefault(name, []).append(message)


def _node_type(node: dict) -> NodeType | None:
    """The registered type of a node; None for unknown names and for non-string types (a list is unhashable)."""
    name = node.get("type")
    return REGISTRY.get(name) if isinstance(name, str) else None


def validate_graph(graph) -> dict:
    """Return the graph if valid; raise ValidationFailed whose fields are `graph.nodes[<id>].<field>`."""
    errors: dict[str, list[str]] = {}
    if not isinstance(graph, dict):
        raise ValidationFailed(
            "graph: must be an object with 'nodes' and 'edges'.", fields={"graph": ["Not an object."]}
        )
    unknown = set(graph) - {"nodes", "edges"}
    if unknown:
        _error(errors, "graph", f"Unknown keys: {', '.join(sorted(unknown))}.")
    nodes = graph.get("nodes")
    edges = graph.get("edges", [])
    if not isinstance(nodes, list) or not nodes:
        _error(errors, "graph.nodes", "Give a non-empty list of nodes.")
        nodes = []
    if len(nodes) > MAX_NODES:
        # Refused before the per-node checks: the cycle search recurses once per node.
        raise ValidationFailed(
            f"graph.nodes: At most {MAX_NODES} nodes.", fields={"graph.nodes": [f"At most {MAX_NODES} nodes."]}
        )
    ids: dict[str, dict] = {}
    for index, node in enumerate(nodes):
        if not isinstance(node, dict):
            _error(errors, f"graph.nodes[{index}]", "Each node is an object.")
            continue
        node_id = node.get("id")
        label = f"graph.nodes[{node_id}]" if isinstance(node_id, str) and node_id else f"graph.nodes[{index}]"
        if not isinstance(node_id, str) or not NODE_ID.fullmatch(node_id):
            _error(errors, f"{label}.id", "Use a letter then letters, digits or _ (max 64).")
            continue
        if node_id in ids:
            _error(errors, f"{label}.id", f"Duplicate node id '{node_id}'.")
            continue
        ids[node_id] = node
        node_type = _node_type(node)
        if node_type is None:
            _error(errors, f"{label}.type", f"Unknown node type {node.get('type')!r}; known: {', '.join(REGISTRY)}.")
            continue
        for name in sorted(set(node) - set(node_type.fields) - {"id", "type"}):
            _error(errors, f"{label}.{name}", f"Unknown field for a {node_type.name} node.")
        for name, spec in node_type.fields.items():
            value = node.get(name)
            if value is None:
                if spec.required:
                    _error(errors, f"{label}.{name}", "Required.")
                continue
            if not isinstance(value, spec.kind) or (isinstance(value, str) and not value.strip()):
                _error(errors, f"{label}.{name}", f"Must be a non-empty {getattr(spec.kind, '__name__', spec.kind)}.")
                continue
            if isinstance(value, str) and (len(value) > MAX_TEXT or "\x00" in value):
                _error(errors, f"{label}.{name}", "Too long or contains NUL characters.")
            if spec.choices and value not in spec.choices:
                _error(errors, f"{label}.{name}", f"One of: {', '.join(spec.choices)}.")
            if name == "key" and isinstance(value, list) and not all(isinstance(k, str) and k for k in value):
                _error(errors, f"{label}.key", "A list of column names.")
            if name == "expectations":
                for where, messages in expectations.collect_errors(value, f"{label}.expectations").items():
                    for message in messages:
                        _error(errors, where, message)
    if not isinstance(edges, list):
        _error(errors, "graph.edges", "Give a list of [from, to] pairs.")
        edges = []
    incoming: dict[str, int] = dict.fromkeys(ids, 0)
    adjacency: dict[str, list[str]] = {node_id: [] for node_id in ids}
    for index, edge in enumerate(edges):
        if not (isinstance(edge, list) and len(edge) == 2 and all(isinstance(e, str) for e in edge)):
            _error(errors, f"graph.edges[{index}]", "Each edge is a [from, to] pair of node ids.")
            continue
        source, target = edge
        for end in (source, target):
            if end not in ids:
                _error(errors, f"graph.edges[{index}]", f"Unknown node '{end}'.")
        if source in ids and target in ids:
            adjacency[source].append(target)
            incoming[target] += 1
    for node_id, node in ids.items():
        node_type = _node_type(node)
        if node_type and node_type.writes and incoming.get(node_id, 0) == 0:
            _error(errors, f"graph.nodes[{node_id}]", "A destination needs an incoming edge.")
    cycle = _find_cycle(adjacency)
    if cycle:
        _error(errors, "graph.edges", f"The graph has a cycle: {' → '.join(cycle)}.")
    if errors:
        first_field, first_messages = next(iter(errors.items()))
        raise ValidationFailed(f"{first_field}: {first_messages[0]}", fields=errors)
    return graph


def _find_cycle(adjacency: dict[str, list[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in adjacency.get(node, []):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if state.get(nxt) is None:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in adjacency:
        if state.get(node) is None:
            found = visit(node)
            if found:
                return found
    return None


def canonical(graph: dict) -> str:
    return json.dumps(graph, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_hash(graph: dict) -> str:
    return "sha256:" + hashlib.sha256(canonical(graph).encode()).hexdigest()


def interpolated_fields(node: dict) -> list[str]:
    node_type = _node_type(node)
    if node_type is None:
        return []
    return [name for name, spec in node_type.fields.items() if spec.interpolated and isinstance(node.get(name), str)]


def text_fields(node: dict) -> list[tuple[str, str]]:
    """(field, text) for every text a node carries, lists of text included (`key` columns)."""
    node_type = _node_type(node)
    if node_type is None:
        return []
    out = []
    for name in node_type.fields:
        value = node.get(name)
        if isinstance(value, str):
            out.append((name, value))
        elif isinstance(value, list):
            out.extend((name, item) for item in value if isinstance(item, str))
    return out


def diff(before: dict | None, after: dict) -> dict:
    """Nodes added, removed and changed (field by field), and edges added and removed."""
    old = {n["id"]: n for n in (before or {}).get("nodes", [])}
    new = {n["id"]: n for n in after.get("nodes", [])}
    changed = {}
    for node_id in sorted(old.keys() & new.keys()):
        fields = {}
        for name in sorted(set(old[node_id]) | set(new[node_id])):
            if old[node_id].get(name) != new[node_id].get(name):
                fields[name] = {"before": old[node_id].get(name), "after": new[node_id].get(name)}
        if fields:
            changed[node_id] = fields
    old_edges = {tuple(e) for e in (before or {}).get("edges", [])}
    new_edges = {tuple(e) for e in after.get("edges", [])}
    return {
        "nodes_added": [new[i] for i in sorted(new.keys() - old.keys())],
        "nodes_removed": [old[i] for i in sorted(old.keys() - new.keys())],
        "nodes_changed": changed,
        "edges_added": sorted(list(e) for e in new_edges - old_edges),
        "edges_removed": sorted(list(e) for e in old_edges - new_edges),
        "identical": not (new.keys() ^ old.keys()) and not changed and old_edges == new_edges,
    }
