"""The engine's whole answer for the configured organization: layered variables with their source,
connection bindings with credential references (never values) and the interpolated graph."""

import json

from apps.resolution import engine


def test_resolves_layers_bindings_and_graph(configured, pipeline, stages):
    answer = engine.resolve(pipeline, stages["production"])
    assert answer["errors"] == []
    assert answer["variables"]["db_schema"]["value"] == "prod"
    assert answer["variables"]["db_schema"]["source"] == "override:organization"
    assert answer["connections"]["reporting_db"]["params"] == {"path": "prod_reporting_db.sqlite3"}
    assert answer["connections"]["reporting_db"]["credential"] == "secret://warehouse_password"
    assert answer["graph"]["nodes"][0]["query"] == "SELECT * FROM prod.orders"
    assert "CANARY" not in json.dumps(answer)
    dev = engine.resolve(pipeline, stages["development"])
    assert dev["variables"]["db_schema"] == {
        "type": "string",
        "scope": "organization",
        "source": "default:organization",
        "value": "dev",
        "secret": None,
    }
