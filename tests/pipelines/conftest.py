"""Pipelines fixtures: the resolution fixtures (project, pipeline, version), a superuser and graph builders."""

import copy

import pytest
from django.contrib.auth import get_user_model

from tests.resolution.conftest import GRAPH, pipeline, project, version  # noqa: F401

User = get_user_model()


def graph(**changes) -> dict:
    """A deep copy of the sample graph (source → destination), optionally with top-level changes."""
    result = copy.deepcopy(GRAPH)
    result.update(copy.deepcopy(changes))
    return result


def node(graph_: dict, node_id: str) -> dict:
    return next(n for n in graph_["nodes"] if n["id"] == node_id)


@pytest.fixture
def superuser(db):
    return User.objects.create_superuser("root", "root@example.com", "pw")
