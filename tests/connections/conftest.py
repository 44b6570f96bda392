"""Fixtures for the connections tests (personas come from tests/conftest.py)."""

from tests.resolution.conftest import canary_secret, configured, pipeline, project, version  # noqa: F401
from tests.variables.conftest import dev_secret, grant  # noqa: F401
