"""The world of the external schemathesis run (scripts/schemathesis-live.sh): the demo organization
(stages, members, grants, a secret, a project, a pipeline with a version, variables and overrides,
connection roles and bindings, a deployment, a schedule, approval rules) plus one of everything
else the API lists (a run of each executor, a promotion request, a notification channel, an inbox
notification, a freeze window, a service account, spare API keys, an on-success and a webhook
trigger), so generated ids hit real rows.

Prints one JSON line: the bearer token of an `admin`-scoped key of the owner, and the ids the run
must never destroy (that key, the owner's membership, the organization), read by
scripts/schemathesis_hooks.py. Run as `python scripts/schemathesis_world.py`: it migrates the
(empty) database first, in the same process (one Django start-up less on a loaded machine)."""

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "planasonix_env.settings")

import django

django.setup()

from django.core.management import call_command  # noqa: E402

from apps.approvals import services as approval_services  # noqa: E402
from apps.demo.services import seed_demo  # noqa: E402
from apps.environments import services as env_services  # noqa: E402
from apps.environments.models import FreezeKind  # noqa: E402
from apps.notifications import services as notification_services  # noqa: E402
from apps.notifications.models import ChannelKind, Event  # noqa: E402
from apps.pipelines import services as pipeline_services  # noqa: E402
from apps.runs import services as run_services  # noqa: E402
from apps.runs.models import Executor, TriggerKind  # noqa: E402
from apps.tenancy import services as tenancy_services  # noqa: E402
from apps.tenancy.models import Membership  # noqa: E402
from apps.variables import services as variable_services  # noqa: E402


def build() -> dict:
    demo = seed_demo()
    org, stages, pipeline = demo["organization"], demo["stages"], demo["pipeline"]
    owner, dev = demo["users"]["admin"], demo["users"]["dev"]
    version = pipeline.versions.order_by("number").first()
    run_services.run_create(actor=owner, pipeline=pipeline, environment=stages["development"])
    run_services.run_create(
        actor=owner, pipeline=pipeline, environment=stages["development"], executor_kind=Executor.EXTERNAL
    )
    approval_services.promotion_request_create(
        actor=dev, pipeline=pipeline, version=version, source=stages["development"], reason="schemathesis"
    )
    channel, _ = notification_services.channel_create(
        actor=owner, organization=org, name="ops", kind=ChannelKind.EMAIL, target="ops@acme.example"
    )
    notification_services.emit(
        Event.RUN_FAILED, {"environment": "development"}, organization=org, channels=[channel], users=[owner]
    )
    env_services.freeze_window_create(
        actor=owner,
        environment=stages["production"],
        kind=FreezeKind.RECURRING,
        cron="0 22 * * 5",
        duration_minutes=60,
        timezone="UTC",
        reason="weekend",
    )
    variable_services.personal_override_set(
        actor=owner, variable=org.variables.get(name="source_table"), environment=stages["development"], value="mine"
    )
    tenancy_services.service_account_create(actor=owner, organization=org, name="ci")
    downstream = pipeline_services.pipeline_create(actor=owner, project=pipeline.project, name="Orders downstream")
    pipeline_services.pipeline_version_create(actor=owner, pipeline=downstream, graph=version.graph)
    run_services.trigger_create(
        actor=owner,
        pipeline=downstream,
        environment=stages["development"],
        kind=TriggerKind.ON_SUCCESS,
        upstream_pipeline=pipeline,
    )
    run_services.trigger_create(
        actor=owner,
        pipeline=pipeline,
        environment=stages["development"],
        kind=TriggerKind.WEBHOOK,
        signing_secret=org.secrets.first(),
    )
    for name in ("spare-1", "spare-2"):  # keys the run may revoke
        tenancy_services.api_key_create(actor=owner, organization=org, name=name, scopes=["read"])
    key, token = tenancy_services.api_key_create(actor=owner, organization=org, name="schemathesis", scopes=["admin"])
    return {
        "token": token,
        "api_key": key.pk,
        "membership": Membership.objects.get(organization=org, user=owner).pk,
        "organization": org.pk,
    }


if __name__ == "__main__":
    call_command("migrate", interactive=False, verbosity=0)
    print(json.dumps(build()))
