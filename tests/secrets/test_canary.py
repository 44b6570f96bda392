"""Invariant 1: no secret value ever appears in a response, admin page, history row or log record.

One test drives every surface that shows secrets or configuration that references them (API,
admin, resolution endpoints, error paths), with SQL logged at DEBUG, then scans everything the
users and operators could see: response bodies, pages, every Historical* table, every log record."""

import logging

import pytest
from django.apps import apps
from django.contrib import admin as django_admin
from django.db import connection
from django.test import Client
from django.urls import reverse

from apps.secrets.models import Secret
from apps.variables import services as variable_services

from .conftest import CANARY

pytestmark = pytest.mark.django_db

SECOND = "CANARY-second-VALUE-4b3a2c"
THIRD = "CANARY-third-VALUE-77aa11"


def _record_text(record: logging.LogRecord) -> str:
    parts = [record.getMessage(), repr(record.args), record.exc_text or ""]
    if record.exc_info:
        parts.append(logging.Formatter().formatException(record.exc_info))
    return "\n".join(parts)


def _history_dump() -> str:
    rows = []
    for model in apps.get_models():
        if model.__name__.startswith("Historical"):
            rows.extend(repr(row) for row in model.objects.values())
    return "\n".join(rows)


def test_secret_values_never_leak(
    caplog, configured, org, org_admin, stages, pipeline, project, canary_secret, api, superuser, members
):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="django.db.backends")
    connection.force_debug_cursor = True  # every SQL statement and its parameters is logged
    seen: list[tuple[str, str]] = []

    def see(label, response, status=200):
        assert response.status_code == status, (label, response.status_code, response.content[:2000])
        seen.append((label, response.content.decode()))
        return response

    try:
        client = api(org_admin)
        variable = variable_services.variable_create(
            actor=org_admin, organization=org, name="warehouse_pw", type="secret", default_secret=canary_secret
        )
        variable_services.variable_override_set(
            actor=org_admin, variable=variable, environment=stages["production"], secret=canary_secret
        )

        # --- the secrets API, including refusals that carry the value in the request ---
        created = see(
            "create",
            client.post(
                "/api/v1/secrets/",
                {"organization": "acme", "name": "second_pw", "value": SECOND, "allowed_environments": ["staging"]},
                format="json",
            ),
            201,
        )
        second_id = created.json()["id"]
        see("list", client.get("/api/v1/secrets/"))
        see("detail", client.get(f"/api/v1/secrets/{canary_secret.pk}/"))
        see("rotate", client.patch(f"/api/v1/secrets/{second_id}/", {"value": THIRD}, format="json"))
        see(
            "duplicate",
            client.post(
                "/api/v1/secrets/", {"organization": "acme", "name": "second_pw", "value": SECOND}, format="json"
            ),
            409,
        )
        see(
            "bad name",
            client.post(
                "/api/v1/secrets/", {"organization": "acme", "name": "Bad Name", "value": SECOND}, format="json"
            ),
            400,
        )
        see(
            "too long",
            client.post(
                "/api/v1/secrets/", {"organization": "acme", "name": "long_pw", "value": SECOND * 3000}, format="json"
            ),
            400,
        )
        see(
            "env with value",
            client.post(
                "/api/v1/secrets/",
                {
                    "organization": "acme",
                    "name": "env_pw",
                    "provider": "env",
                    "reference": "PNX_SECRET_X",
                    "value": SECOND,
                },
                format="json",
            ),
            400,
        )
        see("delete referenced", client.delete(f"/api/v1/secrets/{canary_secret.pk}/"), 409)
        see(
            "developer rotate",
            api(members["developer"]).patch(f"/api/v1/secrets/{canary_secret.pk}/", {"value": SECOND}, format="json"),
            403,
        )

        # --- configuration that references the secret ---
        for slug in ("development", "staging", "production"):
            see(f"resolve {slug}", client.get(f"/api/v1/pipelines/{pipeline.pk}/resolve/", {"environment": slug}))
            see(f"readiness {slug}", client.get(f"/api/v1/pipelines/{pipeline.pk}/readiness/", {"environment": slug}))
        see("diff", client.get(f"/api/v1/pipelines/{pipeline.pk}/diff/", {"from": "staging", "to": "production"}))
        see("matrix", client.get(f"/api/v1/projects/{project.pk}/matrix/"))
        see("variables", client.get("/api/v1/variables/"))
        overrides = see("variable-overrides", client.get("/api/v1/variable-overrides/")).json()["results"]
        for override in overrides:
            see("variable-override", client.get(f"/api/v1/variable-overrides/{override['id']}/"))
        bindings = see("connection-bindings", client.get("/api/v1/connection-bindings/")).json()["results"]
        assert any(b["credential"] == "secret://warehouse_password" for b in bindings)
        for binding in bindings:
            see("connection-binding", client.get(f"/api/v1/connection-bindings/{binding['id']}/"))

        # --- the admin, including a rotation through the form and a refused form ---
        browser = Client()
        browser.force_login(superuser)
        secret_change = reverse("admin:secrets_secret_change", args=[canary_secret.pk])
        see(
            "admin rotate",
            browser.post(
                secret_change,
                {
                    "value": CANARY,
                    "reference": "",
                    "description": "rotated in the admin",
                    "allowed_environments": [stages["staging"].pk, stages["production"].pk],
                    "_continue": "Save",
                },
                follow=True,
            ),
        )
        see(
            "admin refused add",
            browser.post(
                reverse("admin:secrets_secret_add"),
                {"organization": org.pk, "name": "Bad Name", "provider": "local", "value": SECOND, "_save": "Save"},
            ),
        )
        see("admin changelist", browser.get(reverse("admin:secrets_secret_changelist")))
        see("admin change", browser.get(secret_change))
        see("admin history", browser.get(reverse("admin:secrets_secret_history", args=[canary_secret.pk])))
        for record in Secret.history.filter(id=canary_secret.pk):
            see(
                "admin historical version",
                browser.get(reverse("admin:secrets_secret_simple_history", args=[canary_secret.pk, record.history_id])),
            )
        see("admin delete confirmation", browser.get(reverse("admin:secrets_secret_delete", args=[canary_secret.pk])))
        for model in apps.get_models():
            if model._meta.app_label in ("variables", "connections") and django_admin.site.is_registered(model):
                opts = model._meta
                see(f"admin {opts.label}", browser.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")))
                for obj in model.objects.all()[:5]:
                    see(
                        f"admin {opts.label} change",
                        browser.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])),
                    )
    finally:
        connection.force_debug_cursor = False

    assert len(seen) > 30
    stored = {s.name: s.ciphertext for s in Secret.objects.all()}
    for value in (CANARY, SECOND, THIRD):
        for label, body in seen:
            assert value not in body, f"{value} leaked in {label}"
    history = _history_dump()
    assert history, "history tables are empty: the scan would prove nothing"
    assert "warehouse_password" in history
    logs = "\n".join(_record_text(r) for r in caplog.records)
    assert "INSERT INTO" in logs.upper(), "SQL was not logged: the log scan would prove nothing"
    for value in (CANARY, SECOND, THIRD):
        assert value not in history, f"{value} is in a history table"
        assert value not in logs, f"{value} is in a log record"
    for name, ciphertext in stored.items():
        assert ciphertext not in history, f"the ciphertext of {name} is in a history table"
