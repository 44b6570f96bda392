"""SQLite connections stay where they belong: a binding may not name the platform's own database,
and one outside SQLITE_CONNECTION_ROOT is refused when a run would use it (nothing is queued)."""

import pytest
from django.db import connection

from apps.connections import services as connection_services
from apps.connections.models import ConnectionRole
from apps.core.errors import ValidationFailed
from apps.runs import services
from apps.runs.models import Run


def test_sqlite_binding_cannot_reach_the_platform_database(run_setup, stages, members, org_admin):
    if connection.vendor != "sqlite":
        pytest.skip("the platform database is a file only on SQLite (tests/core/test_egress.py covers servers)")
    role = ConnectionRole.objects.get(name="warehouse")
    platform_db = connection.settings_dict["NAME"]
    with pytest.raises(ValidationFailed) as exc:
        connection_services.connection_binding_set(
            actor=org_admin, role=role, environment=stages["development"], params={"path": str(platform_db)}
        )
    assert "params.path" in exc.value.fields
    assert role.bindings.get(environment=stages["development"]).params == {"path": "warehouse.sqlite3"}


def test_sqlite_binding_outside_the_root_is_refused_at_use(run_setup, stages, org_admin, settings, tmp_path):
    settings.SQLITE_CONNECTION_ROOT = str(tmp_path / "only-here")
    with pytest.raises(ValidationFailed):
        services.run_create(actor=org_admin, pipeline=run_setup["pipeline"], environment=stages["staging"])
    assert not Run.objects.exists()
