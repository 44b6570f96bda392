"""The seven precedence layers of DESIGN.md §5, walked one at a time, and the shadowing cases."""

import pytest

from apps.environments import services as env_services
from apps.resolution import engine
from apps.variables import services as variable_services

LAYERS = [
    "parameter",
    "override:pipeline",
    "override:project",
    "override:organization",
    "default:pipeline",
    "default:project",
    "default:organization",
]


@pytest.fixture
def three_scopes(org, org_admin, project, pipeline, version, stages):
    """`batch_size` defined at all three scopes; every layer present in staging."""
    staging = stages["staging"]
    env_services.runtime_policy_update(actor=org_admin, environment=staging, allow_runtime_overrides=True)
    defs = {
        "organization": variable_services.variable_create(
            actor=org_admin,
            organization=org,
            name="batch_size",
            type="integer",
            default_value=7,
            allow_runtime_override=True,
        ),
        "project": variable_services.variable_create(
            actor=org_admin,
            organization=org,
            project=project,
            name="batch_size",
            type="integer",
            default_value=6,
            allow_runtime_override=True,
        ),
        "pipeline": variable_services.variable_create(
            actor=org_admin,
            organization=org,
            pipeline=pipeline,
            name="batch_size",
            type="integer",
            default_value=5,
            allow_runtime_override=True,
        ),
    }
    values = {"organization": 4, "project": 3, "pipeline": 2}
    overrides = {
        scope: variable_services.variable_override_set(
            actor=org_admin, variable=variable, environment=staging, value=values[scope]
        )
        for scope, variable in defs.items()
    }
    return defs, overrides


def errors_about(answer, name):
    """Errors concerning `name` (the fixture graph's own references are not defined here)."""
    return [e for e in answer["errors"] if e["path"].endswith(f".{name}")]


EXPECTED_VALUE = dict(zip(LAYERS, [1, 2, 3, 4, 5, 6, 7], strict=True))


@pytest.mark.parametrize("layer", LAYERS)
def test_each_layer_wins_when_all_above_it_are_removed(layer, three_scopes, pipeline, stages, org_admin):
    """Remove every layer above `layer`; `layer` must then supply the value."""
    defs, overrides = three_scopes
    parameters = {"batch_size": 1} if layer == "parameter" else {}
    for above in LAYERS[1 : LAYERS.index(layer)]:
        kind, scope = above.split(":")
        if kind == "override":
            variable_services.variable_override_delete(actor=org_admin, override=overrides[scope])
        else:
            variable_services.variable_update(actor=org_admin, variable=defs[scope], default_value=None)
    answer = engine.resolve(pipeline, stages["staging"], parameters=parameters)
    entry = answer["variables"]["batch_size"]
    assert (entry["source"], entry["value"]) == (layer, EXPECTED_VALUE[layer])
    assert errors_about(answer, "batch_size") == []


def test_environment_value_beats_a_more_specific_default(org, org_admin, project, pipeline, version, stages):
    """An organization-wide production override is never hidden by a pipeline's dev-friendly default."""
    org_var = variable_services.variable_create(
        actor=org_admin, organization=org, name="bucket", type="string", default_value="s3://org-default"
    )
    variable_services.variable_create(
        actor=org_admin,
        organization=org,
        pipeline=pipeline,
        name="bucket",
        type="string",
        default_value="s3://dev-scratch",
    )
    variable_services.variable_override_set(
        actor=org_admin, variable=org_var, environment=stages["production"], value="s3://prod-lake"
    )
    prod = engine.resolve(pipeline, stages["production"])["variables"]["bucket"]
    dev = engine.resolve(pipeline, stages["development"])["variables"]["bucket"]
    assert (prod["value"], prod["source"]) == ("s3://prod-lake", "override:organization")
    assert (dev["value"], dev["source"]) == ("s3://dev-scratch", "default:pipeline")


def test_more_specific_override_shadows_broader_override(three_scopes, pipeline, stages):
    entry = engine.resolve(pipeline, stages["staging"])["variables"]["batch_size"]
    assert (entry["source"], entry["value"]) == ("override:pipeline", 2)


def test_other_environments_only_see_defaults(three_scopes, pipeline, stages):
    entry = engine.resolve(pipeline, stages["development"])["variables"]["batch_size"]
    assert (entry["source"], entry["value"]) == ("default:pipeline", 5)


def test_run_parameter_refused_when_policy_forbids(three_scopes, pipeline, stages):
    """Production's policy forbids run-time overrides: the parameter is an error, the override stands."""
    answer = engine.resolve(pipeline, stages["production"], parameters={"batch_size": 1})
    assert answer["variables"]["batch_size"]["source"] == "default:pipeline"
    assert [e["code"] for e in errors_about(answer, "batch_size")] == ["override_not_allowed"]


def test_run_parameter_refused_when_variable_forbids(three_scopes, pipeline, stages, org_admin):
    defs, _ = three_scopes
    for variable in defs.values():
        variable_services.variable_update(actor=org_admin, variable=variable, allow_runtime_override=False)
    answer = engine.resolve(pipeline, stages["staging"], parameters={"batch_size": 1})
    assert answer["variables"]["batch_size"]["value"] == 2
    assert [e["code"] for e in errors_about(answer, "batch_size")] == ["override_not_allowed"]


def test_run_parameter_is_type_checked(three_scopes, pipeline, stages):
    answer = engine.resolve(pipeline, stages["staging"], parameters={"batch_size": "many"})
    assert [e["code"] for e in errors_about(answer, "batch_size")] == ["invalid_parameter"]
    assert answer["variables"]["batch_size"]["value"] == 2


def test_definitions_must_agree_on_type(three_scopes, org, org_admin, pipeline):
    from apps.core.errors import ValidationFailed

    with pytest.raises(ValidationFailed) as exc:
        variable_services.variable_create(
            actor=org_admin, organization=org, name="batch_size", type="string", project=None, default_value="x"
        )
    assert "type" in exc.value.fields or "name" in exc.value.fields
