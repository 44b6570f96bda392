from io import StringIO

import pytest
import yaml
from django.core.management import CommandError, call_command

from apps.variables.models import Variable, VariableOverride


def test_export_import_roundtrip_is_idempotent_and_dry_run_writes_nothing(configured, org, org_admin, tmp_path):
    out = StringIO()
    call_command("export_config", "acme", stdout=out)
    document = yaml.safe_load(out.getvalue())
    assert "CANARY" not in out.getvalue()
    db_schema = next(v for v in document["variables"] if v["name"] == "db_schema")
    assert db_schema["overrides"]["production"] == {"value": "prod"}

    path = tmp_path / "config.yaml"
    path.write_text(out.getvalue())
    same = StringIO()
    call_command("import_config", "acme", str(path), "--apply", "--user", org_admin.username, stdout=same)
    assert "Applied: 0 change(s)" in same.getvalue()

    db_schema["overrides"]["production"] = {"value": "prod2"}
    db_schema["overrides"]["development"] = {"value": "dev2"}
    path.write_text(yaml.safe_dump(document))
    dry = StringIO()
    call_command("import_config", "acme", str(path), "--user", org_admin.username, stdout=dry)
    assert "~ override db_schema@production" in dry.getvalue()
    assert "+ override db_schema@development" in dry.getvalue()
    assert VariableOverride.objects.get(variable__name="db_schema", environment__slug="production").value == "prod"

    applied = StringIO()
    call_command("import_config", "acme", str(path), "--apply", "--user", org_admin.username, stdout=applied)
    override = VariableOverride.objects.get(variable__name="db_schema", environment__slug="production")
    assert override.value == "prod2"
    assert override.history.latest().history_user == org_admin


def test_import_validates_everything_before_writing(configured, org_admin, tmp_path):
    out = StringIO()
    call_command("export_config", "acme", stdout=out)
    document = yaml.safe_load(out.getvalue())
    document["variables"].append(
        {"name": "batch_size", "scope": "organization", "type": "integer", "default": {"value": 100}}
    )
    document["variables"].append(
        {"name": "broken", "scope": "organization", "type": "integer", "default": {"value": "not a number"}}
    )
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(CommandError, match="Nothing was changed"):
        call_command("import_config", "acme", str(path), "--apply", "--user", org_admin.username, stdout=StringIO())
    assert not Variable.objects.filter(name="batch_size").exists()
