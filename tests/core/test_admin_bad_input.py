"""Every registered admin, fed odd values: its pages answer (never a 500), and an add or change form
refused with errors writes nothing.

For each ModelAdmin in the admin site: the changelist, the add page and, for one existing row, the
change and history pages. Forms are submitted as a browser would: the page's own form, parsed from
its HTML (hidden inputs and inline management forms included), with one field at a time replaced by
an odd value. The world is built once for the module (inside a transaction rolled back at the end)."""

from html.parser import HTMLParser

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.forms.models import model_to_dict
from django.test import Client
from django.urls import NoReverseMatch, reverse

from apps.environments import permissions as perms

from .worlds import acme, rolled_back

pytestmark = pytest.mark.django_db

# What a text area (JSON values, patterns, graphs) gets, one at a time.
ODD_TEXTAREA = [
    "NaN",
    "[1e999]",
    '{"a": -Infinity}',
    '{"a": 1, "a": 2}',
    "[[1, 2]",
    "[" * 5000 + "]" * 5000,
    "1" + "0" * 30,
    "x" * 5000,
    "(a+)+b(?=x)",
]
# What a one-line text box gets.
ODD_TEXT = ["NaN", "1" + "0" * 30, "x" * 5000, "2026-13-45T99:99", "(?=x)"]
# What a drop-down or a hidden id gets.
ODD_CHOICES = ["1" + "0" * 30, "-1"]
ODD_BY_KIND = {"textarea": ODD_TEXTAREA, "select": ODD_CHOICES, "hidden": ODD_CHOICES}

MANAGEMENT = ("TOTAL_FORMS", "INITIAL_FORMS", "MIN_NUM_FORMS", "MAX_NUM_FORMS")


class FormParser(HTMLParser):
    """The fields of the page's main form, as a browser would submit them: [(name, value, kind)]."""

    def __init__(self):
        super().__init__()
        self.fields: list[tuple[str, str, str]] = []
        self._in_form = False
        self._select: str | None = None
        self._select_value: str | None = None
        self._select_first: str | None = None
        self._option_value: str | None = None
        self._textarea: str | None = None
        self._text = ""

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form" and attrs.get("method", "").lower() == "post" and attrs.get("id", "").endswith("_form"):
            self._in_form = True
        if not self._in_form:
            return
        name = attrs.get("name")
        if tag == "input" and name and "disabled" not in attrs:
            kind = attrs.get("type", "text")
            if kind in ("submit", "button", "file", "image", "reset"):
                return
            if kind in ("checkbox", "radio") and "checked" not in attrs:
                return
            self.fields.append((name, attrs.get("value", "on" if kind == "checkbox" else ""), kind))
        elif tag == "textarea" and name and "disabled" not in attrs:
            self._textarea, self._text = name, ""
        elif tag == "select" and name and "disabled" not in attrs:
            self._select, self._select_value, self._select_first = name, None, None
        elif tag == "option" and self._select:
            value = attrs.get("value", "")
            if self._select_first is None:
                self._select_first = value
            if "selected" in attrs:
                self._select_value = value

    def handle_data(self, data):
        if self._textarea:
            self._text += data

    def handle_endtag(self, tag):
        if tag == "form":
            self._in_form = False
        elif tag == "textarea" and self._textarea:
            self.fields.append((self._textarea, self._text.lstrip("\n"), "textarea"))
            self._textarea = None
        elif tag == "select" and self._select:
            value = self._select_value if self._select_value is not None else self._select_first
            if value is not None:
                self.fields.append((self._select, value, "select"))
            self._select = None


def page_form(response) -> list[tuple[str, str, str]]:
    parser = FormParser()
    parser.feed(response.content.decode())
    return parser.fields


def as_post_data(fields) -> dict:
    data: dict[str, list[str]] = {}
    for name, value, _kind in fields:
        data.setdefault(name, []).append(value)
    return data


def _admins():
    return sorted(admin.site._registry.items(), key=lambda item: item[0]._meta.label)


ADMINS = [model_admin for _model, model_admin in _admins()]


def _admin_id(model_admin) -> str:
    return model_admin.model._meta.label


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker, tmp_path_factory):
    """One of (nearly) everything the admin shows, made once and rolled back."""
    with rolled_back(django_db_blocker):
        yield _build_world(tmp_path_factory.mktemp("warehouse") / "warehouse.sqlite3")


def _build_world(warehouse_path) -> dict:
    from apps.approvals import services as approval_services
    from apps.approvals.models import ApprovalRule
    from apps.connections import services as connection_services
    from apps.environments import services as env_services
    from apps.environments.models import FreezeKind
    from apps.notifications import services as notification_services
    from apps.notifications.models import ChannelKind, Event
    from apps.runs import services as run_services
    from apps.runs.models import Executor
    from apps.secrets import services as secret_services
    from apps.tenancy import services as tenancy_services
    from apps.variables import services as variable_services

    w = acme("ab")
    operator, owner, org, pipeline, version = (w[k] for k in ("operator", "owner", "org", "pipeline", "version"))
    production, staging, development = w["production"], w["staging"], w["development"]
    users = get_user_model().objects
    env_services.freeze_window_create(
        actor=owner,
        environment=production,
        kind=FreezeKind.RECURRING,
        cron="0 22 * * 5",
        duration_minutes=60,
        timezone="UTC",
        reason="weekend",
    )
    member = users.create_user("ab-member", "ab-member@example.com", "pw")
    tenancy_services.membership_add(actor=owner, organization=org, user=member, role="member")
    tenancy_services.service_account_create(actor=owner, organization=org, name="ci runner")
    tenancy_services.api_key_create(actor=owner, organization=org, name="ci", scopes=["read"])
    secret = secret_services.secret_create(
        actor=owner, organization=org, name="db_password", value="s3cr3t-value", allowed_environments=[development]
    )
    variable = variable_services.variable_create(
        actor=owner, organization=org, name="batch_size", type="integer", default_value=10
    )
    variable_services.variable_override_set(actor=owner, variable=variable, environment=staging, value=20)
    variable_services.personal_override_set(actor=owner, variable=variable, environment=development, value=15)
    variable_services.variable_create(actor=owner, organization=org, name="region", type="string", regex="[a-z-]+")
    role = connection_services.connection_role_create(actor=owner, organization=org, name="warehouse", kind="sqlite")
    binding = connection_services.connection_binding_set(
        actor=owner, role=role, environment=development, params={"path": "warehouse.sqlite3"}
    )
    connection_services.connection_test_request(actor=owner, binding=binding)
    channel, _ = notification_services.channel_create(
        actor=owner, organization=org, name="ops", kind=ChannelKind.EMAIL, target="ops@example.com"
    )
    notification_services.emit(
        Event.RUN_FAILED, {"environment": "production"}, organization=org, channels=[channel], users=[owner]
    )
    group = Group.objects.create(name="ab-reviewers")
    env_services.permission_grant(actor=owner, environment=staging, codename=perms.VIEW, group=group)
    run_services.schedule_save(actor=owner, pipeline=pipeline, environment=development, cron="0 6 * * *")
    run_services.trigger_create(
        actor=owner, pipeline=pipeline, environment=development, kind="webhook", signing_secret=secret
    )
    run_services.run_create(actor=owner, pipeline=pipeline, environment=development, executor_kind=Executor.EXTERNAL)
    run_services.deploy_direct(actor=owner, pipeline=pipeline, environment=development, version=version)
    approval_services.rule_save(
        actor=owner, rule=ApprovalRule(environment=staging, name="staging review", required_approvals=1)
    )
    promotion, _ = approval_services.promotion_request_create(
        actor=owner, pipeline=pipeline, version=version, source=development
    )
    approval_services.promotion_approve(actor=operator, request=promotion)
    from apps.repositories import services as repository_services
    from apps.repositories.models import WebhookDelivery

    repository = repository_services.repository_create(
        actor=owner, pipeline=pipeline, clone_url="file:///srv/git/orders.git", definition_path="orders.yaml"
    )
    WebhookDelivery.objects.create(repository=repository, provider="github", delivery_id="d-1", event="push")
    # The sign-in audit (django-axes): a failed sign-in (kept) and another account's successful one.
    sign_in = Client()
    sign_in.post("/accounts/login/", {"username": "ab-nobody", "password": "wrong"})
    from axes.models import AccessLog  # a successful sign-in would clear the failure: record one directly

    AccessLog.objects.create(username="ab-member", ip_address="127.0.0.1", user_agent="test", path_info="/")
    return {"operator": operator, "owner": owner}


@pytest.fixture
def client(world):
    client = Client(raise_request_exception=False)
    client.force_login(world["operator"])
    return client


def _url(model_admin, view, *args):
    opts = model_admin.model._meta
    try:
        return reverse(f"admin:{opts.app_label}_{opts.model_name}_{view}", args=args)
    except NoReverseMatch:
        return None


def _row(model_admin):
    return model_admin.model._default_manager.order_by("pk").first()


def _state(model) -> tuple:
    manager = model._default_manager
    return manager.count(), [model_to_dict(row) for row in manager.order_by("-pk")[:3]]


def test_every_admin_with_rows_has_one_here(world):
    """The world has a row for every model the admin shows, so every change and history page is tested."""
    missing = [_admin_id(a) for a in ADMINS if _row(a) is None]
    assert not missing, f"add a row of these to the world: {missing}"


@pytest.mark.parametrize("who", ["operator", "owner"])
@pytest.mark.parametrize("model_admin", ADMINS, ids=_admin_id)
def test_pages_answer(world, model_admin, who):
    client = Client(raise_request_exception=False)
    client.force_login(world[who])
    row = _row(model_admin)
    urls = [_url(model_admin, "changelist"), _url(model_admin, "add")]
    if row is not None:
        urls += [_url(model_admin, "change", row.pk), _url(model_admin, "history", row.pk)]
        history = getattr(row, "history", None)
        first = history.order_by("history_id").first() if history is not None else None
        if first is not None:
            urls.append(_url(model_admin, "simple_history", row.pk, first.history_id))
    for url in filter(None, urls):
        response = client.get(url)
        assert response.status_code in (200, 302, 403, 404), (url, response.status_code)


@pytest.mark.parametrize("model_admin", ADMINS, ids=_admin_id)
def test_forms_refuse_odd_values(client, model_admin):
    model = model_admin.model
    row = _row(model_admin)
    failures = []
    add = _url(model_admin, "add")
    if add:
        failures += [("add", *failure) for failure in _submit_odd_values_isolated(client, add, model)]
    if row is not None and _url(model_admin, "change", row.pk):
        change = _url(model_admin, "change", row.pk)
        failures += [("change", *failure) for failure in _submit_odd_values_isolated(client, change, model)]
    assert not failures, failures


def _submit_odd_values_isolated(client, url, model):
    """Each submission in its own savepoint, rolled back, so an accepted odd value changes no later case."""
    page = client.get(url)
    if page.status_code != 200:
        return []
    fields = page_form(page)
    failures = []
    for index, (name, _value, kind) in enumerate(fields):
        if name == "csrfmiddlewaretoken" or name.endswith(MANAGEMENT):
            continue
        values = ODD_BY_KIND.get(kind, ODD_TEXT if kind in ("text", "number", "email", "url", "password") else [])
        for odd in values:
            changed = list(fields)
            changed[index] = (name, odd, kind)
            with transaction.atomic():
                before = _state(model)
                response = client.post(url, as_post_data(changed))
                if response.status_code >= 500:
                    failures.append((name, odd[:30], response.status_code))
                elif response.status_code == 200 and _state(model) != before:
                    failures.append((name, odd[:30], "refused, but written"))
                transaction.set_rollback(True)
    return failures
