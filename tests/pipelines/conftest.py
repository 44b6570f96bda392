"""Pipelines fixtures: the resolution fixtures (project, pipeline, version) and graph builders."""

import copy

from tests.resolution.conftest import GRAPH, pipeline, project, version  # noqa: F401


def graph(**changes) -> dict:
    """A deep copy of the sample graph (source → destination), optionally with top-level changes."""
    result = copy.deepcopy(GRAPH)
    result.update(copy.deepcopy(changes))
    return result


def node(graph_: dict, node_id: str) -> dict:
    return next(n for n in graph_["nodes"] if n["id"] == node_id)
