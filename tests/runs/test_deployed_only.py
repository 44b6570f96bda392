"""Production and protected stages run only their deployed version: a run cannot bypass promotion."""

import pytest

from apps.core.errors import ValidationFailed
from apps.pipelines import services as pipeline_services
from apps.runs import services
from apps.runs.models import Run

from .conftest import GRAPH

pytestmark = pytest.mark.django_db


def test_production_without_a_deployment_refuses_runs(run_setup, stages, org_admin):
    with pytest.raises(ValidationFailed) as err:
        services.run_create(actor=org_admin, pipeline=run_setup["pipeline"], environment=stages["production"])
    assert "version" in err.value.fields and "promote" in err.value.message
    assert not Run.objects.exists()


def test_production_runs_the_deployed_version_and_refuses_another(run_setup, stages, org_admin):
    pipeline, v1 = run_setup["pipeline"], run_setup["version"]
    v2 = pipeline_services.pipeline_version_create(actor=org_admin, pipeline=pipeline, graph=GRAPH, message="v2")
    services.deploy(actor=org_admin, pipeline=pipeline, environment=stages["production"], version=v1)
    run = services.run_create(actor=org_admin, pipeline=pipeline, environment=stages["production"])
    assert run.version == v1  # the deployed one, not the latest
    with pytest.raises(ValidationFailed) as err:
        services.run_create(actor=org_admin, pipeline=pipeline, environment=stages["production"], version=v2)
    assert "runs only its deployed version (v1)" in err.value.message
    assert Run.objects.count() == 1


def test_development_runs_any_version(run_setup, stages, org_admin):
    pipeline = run_setup["pipeline"]
    v2 = pipeline_services.pipeline_version_create(actor=org_admin, pipeline=pipeline, graph=GRAPH, message="v2")
    run = services.run_create(actor=org_admin, pipeline=pipeline, environment=stages["development"])
    assert run.version == v2  # nothing deployed: the latest
