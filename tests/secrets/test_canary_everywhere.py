"""Invariant: a secret's value never leaves the executor.

One unique value is used every way a user can use a secret: as a binding's credential, as secret
variables at organization, project and pipeline scope and as an environment override. Every
interpolation of a secret into text is refused (at save time, and at run time once a variable
became a secret after the text was saved); the value also sits in the source data (as is, in
base64 and in hex), so what stops it in preview rows and metrics is the masking boundary. Then
everything anyone could see is scanned: every GET operation of the API schema as the org admin,
the web screens, the admin (changelists, change and history pages of every registered model),
every database row (runs, deliveries, notifications, connection tests, every history table),
notification delivery bodies, every log record, and every task sent to Celery."""

import json
import logging
import re
from unittest import mock

import pytest
from celery import Celery
from celery.app.task import Task
from django.apps import apps
from django.contrib import admin as django_admin
from django.db import connection
from django.test import Client
from django.urls import NoReverseMatch, reverse

from apps.connections import services as connection_services
from apps.core.errors import ValidationFailed
from apps.notifications import services as notification_services
from apps.notifications.models import Delivery
from apps.pipelines import services as pipeline_services
from apps.runs import services as run_services
from apps.runs.models import Run, RunStatus
from apps.variables import services as variable_services

from .conftest import WEBHOOK_TOKEN, forms_of
from .conftest import canary_graph as _graph
from .test_canary import _record_text

pytestmark = pytest.mark.django_db


def _refused(call, *needles) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as exc:
        call()
    text = exc.value.message + json.dumps(exc.value.fields)
    for needle in needles:
        assert needle in text, (needle, text)
    return exc.value


def _every_row() -> str:
    """Every row of every table the ORM knows (history tables included)."""
    return "\n".join(repr(row) for model in apps.get_models() for row in model.objects.values())


def _fill(path: str, ids: dict[str, list], pipeline_id: int) -> list[str]:
    if "{number}" in path:
        return [path.replace("{id}", str(pipeline_id)).replace("{number}", str(n)) for n in ids["numbers"]]
    if "{id}" in path:
        listing = path.split("{id}")[0]
        return [path.replace("{id}", str(pk)) for pk in ids.get(listing, [])]
    return [path]


QUERY = {
    "environment": "development",
    "from": "development",
    "to": "staging",
    "node": "orders_src",
}


def test_canary_never_leaves_the_executor(
    world, canary, org, org_admin, stages, api, superuser, caplog, django_capture_on_commit_callbacks
):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="django.db.backends")
    pipeline, project, variables = world["pipeline"], world["project"], world["variables"]
    development = stages["development"]

    # --- save time: every interpolation of a secret into text is refused, naming node, field, variable
    for name in variables:
        _refused(
            lambda name=name: pipeline_services.pipeline_version_create(
                actor=org_admin,
                pipeline=pipeline,
                graph=_graph(f"SELECT order_id, '{{{{ {name} }}}}' AS note FROM x"),  # noqa: S608
            ),
            "orders_src",
            "query",
            name,
        )
    _refused(
        lambda: pipeline_services.pipeline_version_create(
            actor=org_admin, pipeline=pipeline, graph=_graph(table="t_{{ sv_pipeline }}")
        ),
        "orders_out",
        "table",
        "sv_pipeline",
    )
    _refused(
        lambda: pipeline_services.pipeline_version_create(
            actor=org_admin,
            pipeline=pipeline,
            graph=_graph(texts=[("orders_out", "description", "for {{ sv_project }}")]),
        ),
        "orders_out",
        "description",
        "sv_project",
    )
    wrapper = variable_services.variable_create(
        actor=org_admin, organization=org, name="wrapped", type="string", default_value="plain"
    )
    _refused(
        lambda: variable_services.variable_update(actor=org_admin, variable=wrapper, default_value="x{{ sv_org }}"),
        "default_value",
        "sv_org",
    )
    _refused(
        lambda: variable_services.variable_override_set(
            actor=org_admin, variable=wrapper, environment=development, value="{{ sv_override }}"
        ),
        "value",
        "sv_override",
    )
    _refused(
        lambda: connection_services.connection_binding_set(
            actor=org_admin,
            role=world["roles"]["reporting"],
            environment=stages["staging"],
            params={"path": "{{ sv_org }}.sqlite3"},
        ),
        "params.path",
        "sv_org",
    )
    client = api(org_admin)
    refused = client.post(
        f"/api/v1/pipelines/{pipeline.pk}/versions/",
        {"graph": _graph("SELECT '{{ sv_org }}' AS note")},
        format="json",
    )
    assert refused.status_code == 400, refused.content
    assert "graph.nodes[orders_src].query" in refused.json()["error"]["fields"]
    assert not pipeline.versions.exists()

    # --- run time: text saved before its variable became a secret is refused when it resolves
    later = variable_services.variable_create(
        actor=org_admin, organization=org, name="later", type="string", default_value="orders"
    )
    pipeline_services.pipeline_version_create(
        actor=org_admin, pipeline=pipeline, graph=_graph("SELECT order_id, note FROM {{ later }}")
    )
    with django_capture_on_commit_callbacks(execute=False):
        queued = run_services.run_create(actor=org_admin, pipeline=pipeline, environment=development)
    variable_services.variable_update(
        actor=org_admin, variable=later, type="secret", default_value=None, default_secret=world["secret"]
    )
    _refused(
        lambda: run_services.preview(actor=org_admin, pipeline=pipeline, environment=development, node_id="orders_src"),
        "orders_src",
        "query",
        "later",
    )
    _refused(lambda: run_services.run_create(actor=org_admin, pipeline=pipeline, environment=development), "later")
    failed = run_services.run_execute(queued.pk)
    assert failed.status == RunStatus.FAILED and "later" in failed.error and "orders_src" in failed.error

    # --- a working version: the value reaches the worker through the credential and the data only
    pipeline_services.pipeline_version_create(actor=org_admin, pipeline=pipeline, graph=_graph())
    sent: list[str] = []

    def record_apply_async(task, args=None, kwargs=None, **options):
        sent.append(repr((task.name, args, kwargs, options)))

    def record_send_task(app, name, args=None, kwargs=None, **options):
        sent.append(repr((name, args, kwargs, options)))

    connection.force_debug_cursor = True  # every platform SQL statement and its parameters is logged
    seen: list[tuple[str, str]] = []
    try:
        with (
            mock.patch.object(Task, "apply_async", record_apply_async),
            mock.patch.object(Celery, "send_task", record_send_task),
        ):
            preview = client.get(
                "/api/v1/runs/preview/",
                {"pipeline": pipeline.pk, "environment": "development", "node": "orders_src"},
            )
            assert preview.status_code == 200, preview.content
            assert "«secret:canary_pw»" in preview.content.decode()
            seen.append(("preview", preview.content.decode()))
            with django_capture_on_commit_callbacks(execute=True):
                created = client.post(
                    "/api/v1/runs/", {"pipeline": pipeline.pk, "environment": "development"}, format="json"
                )
            assert created.status_code == 201, created.content
            run = run_services.run_execute(created.json()["id"])
            assert run.status == RunStatus.SUCCEEDED, run.error
            assert "«secret:canary_pw»" in json.dumps(run.metrics, ensure_ascii=False)
            deliveries = list(Delivery.objects.all())
            assert deliveries, "no delivery was queued: the payload scan would prove nothing"
            seen += [("delivery body", notification_services._body(d).decode()) for d in deliveries]
        assert sent, "nothing was sent to Celery: the broker scan would prove nothing"

        # --- every GET operation of the API schema, ids filled from the listings
        schema = client.get("/api/v1/schema/", {"format": "json"}).json()
        gets = sorted(path for path, ops in schema["paths"].items() if "get" in ops)
        ids: dict[str, list] = {"numbers": list(pipeline.versions.values_list("number", flat=True))}
        for path in gets:
            if "{" not in path:
                body = client.get(path, {"pipeline": pipeline.pk, **QUERY})
                seen.append((path, body.content.decode()))
                if body.status_code == 200 and isinstance(body.json(), dict) and "results" in body.json():
                    ids[path] = [item["id"] for item in body.json()["results"] if "id" in item][:5]
        ids["/api/v1/pipelines/"] = [pipeline.pk]
        walked = 0
        for path in gets:
            for url in _fill(path, ids, pipeline.pk) if "{" in path else []:
                body = client.get(url, QUERY)
                assert body.status_code < 500, (url, body.content[:500])
                seen.append((url, body.content.decode()))
                walked += 1
        assert walked > 20

        # --- the web screens, as the org admin
        browser = Client()
        browser.force_login(org_admin)
        for url in ("/", "/projects/", f"/projects/{project.pk}/matrix/", f"/pipelines/{pipeline.pk}/", "/audit/"):
            page = browser.get(url)
            assert page.status_code == 200, url
            seen.append((url, page.content.decode()))

        # --- the admin: every registered model's changelist; change and history pages of each object
        # Admin pages that fail for reasons of their own (issue 9's bad-input part) are scanned as
        # they come back: this test is about what they show, not whether they render.
        staff = Client(raise_request_exception=False)
        staff.force_login(superuser)
        for model, _model_admin in django_admin.site._registry.items():
            opts = model._meta
            prefix = f"admin:{opts.app_label}_{opts.model_name}"
            page = staff.get(reverse(f"{prefix}_changelist"))
            seen.append((f"admin {opts.label}", page.content.decode()))
            for obj in model.objects.all()[:5]:
                for view in ("change", "history"):
                    try:
                        url = reverse(f"{prefix}_{view}", args=[obj.pk])
                    except NoReverseMatch:
                        continue
                    seen.append((url, staff.get(url).content.decode()))
                history = getattr(model, "history", None)
                for record in history.filter(id=obj.pk)[:3] if history is not None else ():
                    url = reverse(f"{prefix}_simple_history", args=[obj.pk, record.history_id])
                    seen.append((url, staff.get(url).content.decode()))
    finally:
        connection.force_debug_cursor = False

    rows = _every_row()
    logs = "\n".join(_record_text(r) for r in caplog.records)
    assert "INSERT INTO" in logs.upper(), "SQL was not logged: the log scan would prove nothing"
    assert "canary_pw" in rows and Run.objects.filter(status=RunStatus.SUCCEEDED).exists()
    for form in forms_of(canary):
        for label, body in seen:
            assert form not in body, f"the secret ({form[:12]}…) leaked in {label}"
        assert form not in rows, "the secret is in a database row"
        assert form not in logs, "the secret is in a log record"
        assert form not in "\n".join(sent), "the secret was sent to Celery"
    history = "\n".join(
        repr(r) for m in apps.get_models() if m.__name__.startswith("Historical") for r in m.objects.values()
    )
    assert WEBHOOK_TOKEN not in history, "the webhook URL's token is in a history row"
    assert not re.search(r"hooks\.example\.com/services/", history)
