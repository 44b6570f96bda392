"""The graph format: validation errors that name the node and field, stable hashes, the diff."""

import pytest

from apps.core.errors import ValidationFailed
from apps.pipelines import graph as graphs

from .conftest import graph, node


def errors_of(bad) -> dict:
    with pytest.raises(ValidationFailed) as exc:
        graphs.validate_graph(bad)
    assert exc.value.status == 400
    return exc.value.fields


def test_the_sample_graph_is_valid():
    sample = graph()
    assert graphs.validate_graph(sample) is sample


def test_unknown_type():
    bad = graph()
    node(bad, "orders_src")["type"] = "teleporter"
    assert "graph.nodes[orders_src].type" in errors_of(bad)


def test_non_string_type_is_an_error_not_a_crash():
    bad = graph()
    node(bad, "orders_src")["type"] = ["source"]
    assert "graph.nodes[orders_src].type" in errors_of(bad)
    node(bad, "orders_src")["type"] = {"a": 1}
    assert "graph.nodes[orders_src].type" in errors_of(bad)


def test_missing_field():
    bad = graph()
    del node(bad, "orders_out")["table"]
    errors = errors_of(bad)
    assert errors["graph.nodes[orders_out].table"] == ["Required."]


def test_unknown_field():
    bad = graph()
    node(bad, "orders_src")["colour"] = "red"
    assert "graph.nodes[orders_src].colour" in errors_of(bad)


def test_wrong_type_and_choice():
    bad = graph()
    node(bad, "orders_out")["mode"] = "upsert"
    node(bad, "orders_src")["query"] = 42
    node(bad, "orders_out")["key"] = ["order_id", 7]
    errors = errors_of(bad)
    assert "graph.nodes[orders_out].mode" in errors
    assert "graph.nodes[orders_src].query" in errors
    assert "graph.nodes[orders_out].key" in errors


def test_bad_edges():
    errors = errors_of(graph(edges=[["orders_src", "nowhere"]]))
    assert any("nowhere" in m for m in errors["graph.edges[0]"])
    assert "graph.edges[0]" in errors_of(graph(edges=[["orders_src", "orders_out", "extra"]]))
    assert "graph.edges[0]" in errors_of(graph(edges=["orders_src"]))
    assert "graph.edges" in errors_of(graph(edges={"a": "b"}))


def test_cycle_names_the_chain():
    cyclic = graph()
    cyclic["nodes"].append({"id": "enrich", "type": "destination", "connection": "c", "table": "t"})
    cyclic["edges"] = [["orders_src", "orders_out"], ["orders_out", "enrich"], ["enrich", "orders_out"]]
    messages = errors_of(cyclic)["graph.edges"]
    assert any("cycle" in m and "orders_out" in m and "enrich" in m for m in messages)
    assert "graph.edges" in errors_of(graph(edges=[["orders_src", "orders_out"], ["orders_src", "orders_src"]]))


def test_destination_without_input():
    errors = errors_of(graph(edges=[]))
    assert any("incoming edge" in m for m in errors["graph.nodes[orders_out]"])


def test_duplicate_and_invalid_ids():
    bad = graph()
    bad["nodes"].append(dict(node(bad, "orders_src")))
    assert "graph.nodes[orders_src].id" in errors_of(bad)
    for bad_id in ("1starts_with_digit", "has space", "trailing\n", "", None):
        bad = graph()
        node(bad, "orders_src")["id"] = bad_id
        assert any(name.endswith(".id") for name in errors_of(bad)), bad_id


def test_shape_errors():
    assert "graph" in errors_of(["not", "an", "object"])
    assert "graph.nodes" in errors_of({"nodes": [], "edges": []})
    assert "graph" in errors_of(graph(extra=1))
    assert "graph.nodes[0]" in errors_of({"nodes": ["just a string"], "edges": []})


def test_too_many_nodes_is_refused_without_recursing():
    nodes = [{"id": f"n{i}", "type": "destination", "connection": "c", "table": "t"} for i in range(5000)]
    nodes[0] = {"id": "n0", "type": "source", "connection": "c", "query": "q"}
    edges = [[f"n{i}", f"n{i + 1}"] for i in range(4999)]
    errors = errors_of({"nodes": nodes, "edges": edges})
    assert "graph.nodes" in errors


def test_content_hash_is_stable_for_equal_graphs():
    a = graph()
    b = {"edges": [list(e) for e in a["edges"]], "nodes": [dict(reversed(list(n.items()))) for n in a["nodes"]]}
    assert graphs.content_hash(a) == graphs.content_hash(b)
    assert graphs.content_hash(a).startswith("sha256:") and len(graphs.content_hash(a)) == 71
    changed = graph()
    node(changed, "orders_out")["mode"] = "append"
    assert graphs.content_hash(changed) != graphs.content_hash(a)


def test_diff_reports_nodes_fields_and_edges():
    before = graph()
    after = graph()
    node(after, "orders_out")["mode"] = "append"
    del node(after, "orders_out")["key"]
    after["nodes"].append({"id": "audit_out", "type": "destination", "connection": "c", "table": "audit"})
    after["edges"].append(["orders_src", "audit_out"])
    result = graphs.diff(before, after)
    assert [n["id"] for n in result["nodes_added"]] == ["audit_out"]
    assert result["nodes_removed"] == []
    assert result["nodes_changed"] == {
        "orders_out": {
            "key": {"before": ["order_id"], "after": None},
            "mode": {"before": "replace", "after": "append"},
        }
    }
    assert result["edges_added"] == [["orders_src", "audit_out"]]
    assert result["edges_removed"] == []
    assert result["identical"] is False
    back = graphs.diff(after, before)
    assert [n["id"] for n in back["nodes_removed"]] == ["audit_out"]
    assert back["edges_removed"] == [["orders_src", "audit_out"]]
    assert graphs.diff(before, graph())["identical"] is True
    from_nothing = graphs.diff(None, before)
    assert [n["id"] for n in from_nothing["nodes_added"]] == ["orders_out", "orders_src"]
    assert from_nothing["edges_added"] == [["orders_src", "orders_out"]]


def test_destination_expectations_are_validated_naming_node_column_and_rule():
    good = graph()
    destination = next(n for n in good["nodes"] if n["type"] == "destination")
    destination["expectations"] = {
        "amount": {"not_null": True, "range": {"min": 0}, "max_null_share": 0.1, "max_change": {"sum": 5}},
        "status": {"accepted_values": ["open", "closed"], "unique": False},
    }
    assert graphs.validate_graph(good) is good

    bad = graph()
    destination = next(n for n in bad["nodes"] if n["type"] == "destination")
    label = f"graph.nodes[{destination['id']}].expectations"
    destination["expectations"] = {
        "amount": {"not_null": 1, "range": {"min": 5, "max": 1}, "max_change": {"count": -1, "median": 3}},
        "status": {"accepted_values": [], "between": [1, 2]},
        "note": {"max_null_share": 1.5},
        "day": {"range": {"min": 1, "max": "2024-01-01"}},
        "": {"unique": True},
    }
    fields = errors_of(bad)
    for name in (
        "amount.not_null",
        "amount.range",
        "amount.max_change.count",
        "amount.max_change.median",
        "status.accepted_values",
        "status.between",
        "note.max_null_share",
        "day.range",
    ):
        assert f"{label}.{name}" in fields, (name, fields)
    assert label in fields  # the empty column name

    node_of_rules = graph()
    next(n for n in node_of_rules["nodes"] if n["type"] == "destination")["expectations"] = ["amount"]
    assert f"{label}" in errors_of(node_of_rules)
