"""Every management command of the project, fed bad input through its real entry point (`manage.py
<command> ...`): a non-zero exit, the problem named on the last line of standard error, no traceback,
and nothing written."""

import io
from pathlib import Path

import pytest
import yaml
from django.core.management import execute_from_command_line, load_command_class
from django.forms.models import model_to_dict

from apps.connections import services as connection_services
from apps.connections.models import ConnectionBinding
from apps.core.bounded_yaml import MAX_YAML_BYTES
from apps.core.commands import DomainCommand
from apps.pipelines import services as pipeline_services
from apps.resolution.config_io import dump_yaml, export_configuration
from apps.runs.models import Run
from apps.variables import services as variable_services
from apps.variables.models import Variable, VariableOverride

pytestmark = pytest.mark.django_db

APPS_DIR = Path(__file__).resolve().parents[2] / "apps"
COMMANDS = sorted(
    (path.parts[-4], path.stem) for path in APPS_DIR.glob("*/management/commands/*.py") if not path.stem.startswith("_")
)
HUGE = "1" + "0" * 5000


@pytest.fixture
def world(org, org_admin, stages, members, tmp_path):
    project = pipeline_services.project_create(actor=org_admin, organization=org, name="Sales")
    pipeline = pipeline_services.pipeline_create(actor=org_admin, project=project, name="Orders")
    graph = {
        "nodes": [
            {"id": "src", "type": "source", "connection": "warehouse", "query": "SELECT 1 AS n"},
            {"id": "dst", "type": "destination", "connection": "warehouse", "table": "t", "mode": "replace"},
        ],
        "edges": [["src", "dst"]],
    }
    pipeline_services.pipeline_version_create(actor=org_admin, pipeline=pipeline, graph=graph)
    variable_services.variable_create(
        actor=org_admin, organization=org, name="batch_size", type="integer", default_value=10
    )
    role = connection_services.connection_role_create(
        actor=org_admin, organization=org, name="warehouse", kind="sqlite"
    )
    connection_services.connection_binding_set(
        actor=org_admin, role=role, environment=stages["development"], params={"path": "w.sqlite3"}
    )
    return {"org": org, "admin": org_admin, "tmp": tmp_path}


def _document(world) -> dict:
    return yaml.safe_load(dump_yaml(export_configuration(world["org"])))


def _file(world, name: str, content: str | bytes) -> str:
    path = world["tmp"] / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return str(path)


def _import(world, name, content) -> list[str]:
    return ["import_config", "acme", _file(world, name, content), "--user", "orgadmin", "--apply"]


def _mutated(world, change) -> str:
    document = _document(world)
    change(document)
    return dump_yaml(document)


def _set_default(value):
    def change(document):
        document["variables"][0]["default"] = value

    return change


def _set_params(value):
    def change(document):
        document["connections"][0]["bindings"]["development"]["params"] = value

    return change


def _laughs() -> str:
    lines = ['a: &a ["lol"]']
    for i in range(1, 10):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*{'a' if i == 1 else f'l{i - 1}'}"] * 9) + "]")
    return "\n".join(lines) + "\n"


# (command, argv from the world, a word the error line must contain)
CASES = {
    "import_config: default of the wrong type": (
        lambda w: _import(w, "wrong-default.yaml", _mutated(w, _set_default({"value": "ten"}))),
        "default_value",
    ),
    "import_config: default not a mapping": (
        lambda w: _import(w, "default-list.yaml", _mutated(w, _set_default([1, 2]))),
        "wrong type",
    ),
    "import_config: connection params of the wrong type": (
        lambda w: _import(w, "params.yaml", _mutated(w, _set_params("path=/tmp/x"))),
        "params",
    ),
    "import_config: connection params a list": (
        lambda w: _import(w, "params-list.yaml", _mutated(w, _set_params([1, 2]))),
        "params",
    ),
    "import_config: a huge integer": (
        lambda w: _import(
            w, "huge-int.yaml", _mutated(w, _set_default({"value": 1})).replace("value: 1", f"value: {HUGE}")
        ),
        "integer",
    ),
    "import_config: 5,000-deep nesting": (
        lambda w: _import(w, "deep.yaml", "format: 1\nx: " + "[" * 5000 + "]" * 5000 + "\n"),
        "nested",
    ),
    "import_config: billion laughs": (lambda w: _import(w, "laughs.yaml", _laughs()), "aliases"),
    "import_config: a huge file": (
        lambda w: _import(w, "huge.yaml", "format: 1\n# " + "x" * MAX_YAML_BYTES + "\n"),
        "MiB",
    ),
    "import_config: an unreadable file (a directory)": (
        lambda w: ["import_config", "acme", str(w["tmp"]), "--user", "orgadmin"],
        "Cannot read",
    ),
    "import_config: not UTF-8": (lambda w: _import(w, "latin1.yaml", b"format: 1\nx: \xff\xfe\n"), "UTF-8"),
    "import_config: a missing file": (
        lambda w: ["import_config", "acme", str(w["tmp"] / "missing.yaml"), "--user", "orgadmin"],
        "Cannot read",
    ),
    "run_pipeline: --timeout nan": (
        lambda w: ["run_pipeline", "sales/orders", "-e", "development", "--user", "orgadmin", "--timeout", "nan"],
        "--timeout",
    ),
    "run_pipeline: --timeout -1": (
        lambda w: ["run_pipeline", "sales/orders", "-e", "development", "--user", "orgadmin", "--timeout", "-1"],
        "--timeout",
    ),
    "run_pipeline: --version 10**30": (
        lambda w: ["run_pipeline", "sales/orders", "--user", "orgadmin", "--version", "1" + "0" * 30],
        "--version",
    ),
    "run_pipeline: a pipeline id past the database range": (
        lambda w: ["run_pipeline", "1" + "0" * 30, "--user", "orgadmin", "--timeout", "1"],
        "pipeline",
    ),
    "run_pipeline: --param with NaN": (
        lambda w: ["run_pipeline", "sales/orders", "-e", "development", "--user", "orgadmin", "-p", "batch_size=NaN"],
        "batch_size",
    ),
    "export_config: -o into a missing directory": (
        lambda w: ["export_config", "acme", "-o", str(w["tmp"] / "nonexistent" / "x.yaml")],
        "Cannot write",
    ),
    "export_config: no such organization": (lambda w: ["export_config", "no-such-org"], "no-such-org"),
    "promote: --approve 10**30": (lambda w: ["promote", "--as", "orgadmin", "--approve", "1" + "0" * 30], "--approve"),
    "promote: --version ²": (
        lambda w: [
            "promote",
            "--as",
            "orgadmin",
            "--pipeline",
            "sales/orders",
            "--version",
            "²",
            "--from",
            "development",
        ],
        "--version",
    ),
    "promote: a pipeline id past the database range": (
        lambda w: ["promote", "--as", "orgadmin", "--pipeline", "1" + "0" * 30, "--version", "1", "--from", "dev"],
        "pipeline",
    ),
    "seed_demo: an unknown argument": (lambda w: ["seed_demo", "--no-such-option"], "--no-such-option"),
    "rotate_encryption_keys: an unknown argument": (lambda w: ["rotate_encryption_keys", "extra"], "extra"),
}


def _snapshot() -> dict:
    return {
        "variables": [model_to_dict(v) for v in Variable.objects.order_by("pk")],
        "overrides": VariableOverride.objects.count(),
        "bindings": [model_to_dict(b) for b in ConnectionBinding.objects.order_by("pk")],
        "runs": Run.objects.count(),
        "history": Variable.history.count() + ConnectionBinding.history.count(),
    }


def run_command(argv, monkeypatch) -> tuple[int, str]:
    """`manage.py *argv` in this process: (exit status, standard output + error)."""
    import django.core.management.base as management_base

    # run_from_argv closes every connection when done, which would end the test's transaction.
    monkeypatch.setattr(management_base.connections, "close_all", lambda: None)
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    monkeypatch.setattr("sys.stderr", err)
    try:
        execute_from_command_line(["manage.py", *argv])
        status = 0
    except SystemExit as exit_:
        status = exit_.code if isinstance(exit_.code, int) else 1
    return status, out.getvalue() + err.getvalue()


def test_every_command_is_covered_and_answers_through_the_base_class():
    covered = {case.split(":")[0] for case in CASES}
    names = {name for _app, name in COMMANDS}
    assert names <= covered, f"add bad-input cases for {sorted(names - covered)}"
    for app, name in COMMANDS:
        assert isinstance(load_command_class(f"apps.{app}", name), DomainCommand), name


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input(world, case, monkeypatch):
    argv_for, expected = CASES[case]
    argv = argv_for(world)
    before = _snapshot()
    status, output = run_command(argv, monkeypatch)
    lines = [line for line in output.strip().splitlines() if line.strip()]
    assert status != 0, output[-500:]
    assert "Traceback" not in output, output[-2000:]
    assert lines and expected.lower() in lines[-1].lower(), output[-500:]
    assert len(lines[-1]) < 400, lines[-1][:400]
    assert _snapshot() == before


def test_a_valid_import_still_works(world, monkeypatch):
    """The bounds do not refuse what export_config writes."""
    path = _file(world, "valid.yaml", dump_yaml(export_configuration(world["org"])))
    status, output = run_command(["import_config", "acme", path, "--user", "orgadmin"], monkeypatch)
    assert status == 0, output
    assert "Dry run" in output
