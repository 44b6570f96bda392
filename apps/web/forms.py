"""Forms of the screens: they parse and label input; the services decide (their errors are put back
on the form by `add_domain_error`)."""

import uuid

from django import forms

from apps.approvals.models import PromotionState
from apps.core.admin import add_domain_error
from apps.environments import permissions as perms
from apps.environments.models import Environment
from apps.pipelines.selectors import pipelines_for, projects_for, versions_of
from apps.runs import services as run_services
from apps.runs.models import RunStatus, TriggerKind
from apps.runs.selectors import runs_for
from apps.secrets.models import Secret
from apps.variables.forms import VALUE_HELP
from apps.variables.models import PERSONAL_KINDS, VariableType

from .selectors import AUDIT_MODEL_CHOICES, audit_filter_choices

RUN_CHOICES_LIMIT = 15


class EnvironmentChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj):
        return obj.name


class InboxFilterForm(forms.Form):
    project = forms.ModelChoiceField(queryset=None, required=False, empty_label="All projects")
    pipeline = forms.ModelChoiceField(queryset=None, required=False, empty_label="All pipelines")
    target = EnvironmentChoiceField(
        queryset=None, required=False, empty_label="All targets", label="Target environment"
    )
    state = forms.ChoiceField(choices=[("", "All states"), *PromotionState.choices], required=False)

    def __init__(self, user, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["project"].queryset = projects_for(user).order_by("name")
        self.fields["pipeline"].queryset = pipelines_for(user).order_by("project__name", "name")
        self.fields["pipeline"].label_from_instance = lambda p: f"{p.project.name} / {p.name}"
        self.fields["target"].queryset = Environment.objects.restrict(user).order_by("position", "name")


class DecisionForm(forms.Form):
    """Approve or reject against the plan hash the page showed (posted back as it was)."""

    decision = forms.ChoiceField(choices=[("approve", "Approve"), ("reject", "Reject")], widget=forms.HiddenInput)
    comment = forms.CharField(
        required=False,
        max_length=4000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Required when rejecting.",
    )
    plan_hash = forms.CharField(max_length=71, widget=forms.HiddenInput)


class VersionChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj):
        git = obj.git_tag or (obj.git_commit[:10] if obj.git_commit else "")
        return f"v{obj.number}" + (f" — {obj.message}" if obj.message else "") + (f" ({git})" if git else "")


class RunChoiceField(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj):
        when = obj.finished_at.strftime("%Y-%m-%d %H:%M") if obj.finished_at else ""
        return f"run #{obj.pk}: v{obj.version.number} in {obj.environment.name}, {obj.status} {when}".strip()


class PromotionRequestForm(forms.Form):
    version = VersionChoiceField(queryset=None)
    source = EnvironmentChoiceField(queryset=None, label="From (source environment)")
    target = EnvironmentChoiceField(
        queryset=None,
        required=False,
        label="Into (target environment)",
        empty_label="The next stage on the path",
    )
    reason = forms.CharField(max_length=4000, required=False, widget=forms.Textarea(attrs={"rows": 3}))
    ticket = forms.CharField(max_length=100, required=False, help_text="A change ticket, e.g. OPS-123.")
    attached_runs = RunChoiceField(
        queryset=None,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Validation runs the approvers should see.",
    )
    idempotency_key = forms.CharField(max_length=200, required=False, widget=forms.HiddenInput)

    def __init__(self, user, pipeline, *args, **kwargs):
        super().__init__(*args, **kwargs)
        organization_envs = Environment.objects.in_organization(pipeline.project.organization_id).order_by(
            "position", "name"
        )
        self.fields["version"].queryset = versions_of(pipeline)
        self.fields["source"].queryset = organization_envs.restrict(user)
        self.fields["target"].queryset = organization_envs.restrict(user, perms.REQUEST_PROMOTION)
        recent = list(
            runs_for(user)
            .filter(pipeline=pipeline, status=RunStatus.SUCCEEDED)
            .order_by("-finished_at", "-id")
            .values_list("pk", flat=True)[:RUN_CHOICES_LIMIT]
        )
        self.fields["attached_runs"].queryset = (
            runs_for(user).filter(pk__in=recent).select_related("environment", "version").order_by("-finished_at")
        )
        if not self.is_bound:
            self.initial.setdefault("idempotency_key", uuid.uuid4().hex)


class AuditFilterForm(forms.Form):
    model = forms.ChoiceField(choices=[("", "Everything"), *AUDIT_MODEL_CHOICES], required=False, label="What")
    organization = forms.ModelChoiceField(queryset=None, required=False, empty_label="All organizations")
    environment = EnvironmentChoiceField(queryset=None, required=False, empty_label="All environments")
    user = forms.CharField(max_length=150, required=False, label="Who (username)")
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, user, *args, **kwargs):
        super().__init__(*args, **kwargs)
        choices = audit_filter_choices(user)
        self.fields["organization"].queryset = choices["organizations"]
        self.fields["environment"].queryset = choices["environments"]
        self.fields["environment"].label_from_instance = lambda e: f"{e.organization.name} / {e.name}"

    def clean(self):
        cleaned = super().clean()
        since, until = cleaned.get("since"), cleaned.get("until")
        if since and until and until < since:
            self.add_error("until", "Must be on or after 'since'.")
        return cleaned


class InsightsFilterForm(forms.Form):
    days = forms.IntegerField(min_value=7, max_value=365, initial=30, required=False, label="Last days")


# --- run, schedule and preview dialogs -------------------------------------------------------------------------

PARAM_PREFIX = "param_"
BOOLEAN_CHOICES = [("", "— keep the configured value —"), ("true", "true"), ("false", "false")]
# The product page's words for an edition without environments (seed-environments.md).
NO_ENVIRONMENTS_EXPLANATION = (
    "If you do not see environment selectors in run or schedule dialogs, your organization may be on an "
    "edition that uses projects alone for separation."
)


class RunEnvironmentField(EnvironmentChoiceField):
    """Each stage labelled with what its policy says about run-time parameters and versions."""

    def label_from_instance(self, obj):
        policy = getattr(obj, "policy", None)
        notes = []
        if policy is not None and not policy.allow_runtime_overrides:
            notes.append("no run-time parameters")
        if obj.is_protected or obj.kind == "production":
            notes.append("deployed version only")
        return obj.name + (f" ({', '.join(notes)})" if notes else "")


def _parameter_field(variable) -> forms.Field:
    """A typed input for one run-time parameter (blank: the configured value applies)."""
    label = f"{variable.name} ({variable.type})"
    common = {"required": False, "label": label, "help_text": variable.description[:200]}
    if variable.choices and variable.type == "string":
        return forms.ChoiceField(
            choices=[("", "— keep the configured value —"), *[(c, c) for c in variable.choices]], **common
        )
    if variable.type == "integer":
        return forms.IntegerField(min_value=variable.min_value, max_value=variable.max_value, **common)
    if variable.type == "number":
        return forms.FloatField(min_value=variable.min_value, max_value=variable.max_value, **common)
    if variable.type == "boolean":
        return forms.TypedChoiceField(choices=BOOLEAN_CHOICES, coerce=lambda v: v == "true", empty_value=None, **common)
    if variable.type == "json":
        return forms.JSONField(widget=forms.Textarea(attrs={"rows": 2}), **common)
    return forms.CharField(max_length=4000, strip=False, **common)


def _environment_choice(form, user, pipeline, shown: bool = True, action=None, related=()) -> bool:
    """The `environment` select of a pipeline dialog: the stages where `user` may `action` (view), the
    project's default first chosen; removed (False) where the edition has no environments or the
    dialog fixes the stage."""
    organization = pipeline.project.organization
    if not (organization.has_environments_feature and shown):
        del form.fields["environment"]
        return False
    form.fields["environment"].queryset = (
        Environment.objects.in_organization(organization.pk)
        .restrict(user, action)
        .select_related(*related)
        .order_by("position", "name")
    )
    form.fields["environment"].initial = pipeline.project.default_environment_id
    return True


class RunForm(forms.Form):
    """The run dialog. The stages offered are those where the user may run; which version, which
    parameters and whether a stage's policy allows them is the runs service's answer (its refusals
    come back on these fields)."""

    environment = RunEnvironmentField(queryset=None, empty_label=None, label="Environment")
    version = VersionChoiceField(
        queryset=None,
        required=False,
        empty_label="The deployed version (else the latest)",
        help_text="Production and protected stages run only their deployed version.",
    )
    sample = forms.BooleanField(
        required=False,
        label="Sample run",
        help_text="Read a sample of each source (stages whose policy samples always do). Offered where the "
        "stage's policy allows run-time overrides.",
    )
    idempotency_key = forms.CharField(max_length=200, required=False, widget=forms.HiddenInput)

    def __init__(self, user, pipeline, parameters, *args, **kwargs):
        kwargs.setdefault("auto_id", "run_%s")  # the page holds several forms: ids stay unique
        super().__init__(*args, **kwargs)
        self.shows_environments = _environment_choice(self, user, pipeline, action=perms.RUN, related=("policy",))
        # The stages where a run may ask for a sample: the runs service's sample_answer, per stage.
        stages = (
            list(self.fields["environment"].queryset)
            if self.shows_environments
            else [e for e in [pipeline.project.default_environment] if e is not None]
        )
        self.sample_environments = [e.pk for e in stages if run_services.sample_answer(e).allowed]
        if not self.sample_environments:
            del self.fields["sample"]
        self.fields["version"].queryset = versions_of(pipeline)
        self.parameter_names = []
        for variable in parameters:
            self.fields[PARAM_PREFIX + variable.name] = _parameter_field(variable)
            self.parameter_names.append(variable.name)
        if not self.is_bound:
            self.initial.setdefault("idempotency_key", uuid.uuid4().hex)

    @property
    def shows_sample(self) -> bool:
        return "sample" in self.fields

    @property
    def sample_environments_attr(self) -> str:
        """The stages offering the sample toggle, for the dialog's script (space-separated ids)."""
        return " ".join(str(pk) for pk in self.sample_environments)

    @property
    def parameter_fields(self):
        return [self[PARAM_PREFIX + name] for name in self.parameter_names]

    def parameters(self) -> dict:
        """The parameters given (blank inputs are left to the configuration)."""
        values = {}
        for name in self.parameter_names:
            value = self.cleaned_data.get(PARAM_PREFIX + name)
            if value is not None and value != "":
                values[name] = value
        return values

    def add_service_error(self, exc) -> None:
        """A runs-service refusal on the fields it names (`parameters.x` is the input of x)."""
        fields = {
            (PARAM_PREFIX + name.removeprefix("parameters.") if name.startswith("parameters.") else name): messages_
            for name, messages_ in exc.fields.items()
        }
        add_domain_error(self, type(exc)(exc.message, fields=fields, code=exc.code))


def _enabled_field() -> forms.TypedChoiceField:
    """On, off, or (None) as the runs service decides: on once a version is deployed (schedules, triggers)."""
    return forms.TypedChoiceField(
        choices=[("", "Follow the deployment (on once deployed)"), ("true", "On"), ("false", "Off")],
        coerce=lambda v: v == "true",
        empty_value=None,
        required=False,
        label="Enabled",
    )


class ScheduleForm(forms.Form):
    """Create or change a schedule; the runs service decides who may (locks, manage_schedules)."""

    environment = EnvironmentChoiceField(queryset=None, empty_label=None, label="Environment")
    cron = forms.CharField(max_length=100, help_text="Five fields, e.g. '0 6 * * 1-5' (06:00 on weekdays).")
    timezone = forms.CharField(max_length=64, initial="UTC", label="Time zone", help_text="e.g. Europe/Paris")
    enabled = _enabled_field()

    def __init__(self, user, pipeline, *args, schedule=None, **kwargs):
        kwargs.setdefault("auto_id", "schedule_%s")  # the page holds several forms: ids stay unique
        super().__init__(*args, **kwargs)
        self.shows_environments = _environment_choice(self, user, pipeline, shown=schedule is None)
        if schedule is not None:
            self.initial.update(
                cron=schedule.cron, timezone=schedule.timezone, enabled="true" if schedule.enabled else "false"
            )
            self.fields["enabled"].choices = [("true", "On"), ("false", "Off")]


class TriggerForm(forms.Form):
    """Create a trigger: on success of another pipeline in the same environment, or on a signed
    webhook; the runs service decides who may, cycles and when it is on."""

    environment = EnvironmentChoiceField(queryset=None, empty_label=None, label="Environment")
    kind = forms.ChoiceField(choices=TriggerKind.choices, label="Start this pipeline")
    upstream_pipeline = forms.ModelChoiceField(
        queryset=None, required=False, label="On success of", help_text="Its succeeded runs in this environment."
    )
    signing_secret = forms.ModelChoiceField(
        queryset=None,
        required=False,
        label="Signing secret",
        help_text="Webhook deliveries are signed with it (HMAC-SHA256 over the timestamp and the body).",
    )
    enabled = _enabled_field()

    def __init__(self, user, pipeline, *args, **kwargs):
        kwargs.setdefault("auto_id", "trigger_%s")  # the page holds several forms: ids stay unique
        super().__init__(*args, **kwargs)
        organization = pipeline.project.organization
        self.shows_environments = _environment_choice(self, user, pipeline)
        self.fields["upstream_pipeline"].queryset = (
            pipelines_for(user)
            .filter(project__organization=organization)
            .select_related("project")
            .order_by("project__name", "name")
        )
        self.fields["upstream_pipeline"].label_from_instance = lambda p: f"{p.project.name} / {p.name}"
        self.fields["signing_secret"].queryset = Secret.objects.restrict(user).filter(organization=organization)


class PreviewForm(forms.Form):
    """Preview one source node's first rows (the runs service caps them and refuses protected stages)."""

    environment = EnvironmentChoiceField(queryset=None, empty_label=None, label="Environment")
    node = forms.ChoiceField(choices=(), label="Source node")
    limit = forms.IntegerField(min_value=1, max_value=200, initial=20, label="Rows", help_text="At most 200.")

    def __init__(self, user, pipeline, environments, nodes, *args, **kwargs):
        kwargs.setdefault("auto_id", "preview_%s")  # the page holds several forms: ids stay unique
        super().__init__(*args, **kwargs)
        self.shows_environments = pipeline.project.organization.has_environments_feature
        if self.shows_environments:
            self.fields["environment"].queryset = environments
            self.fields["environment"].initial = pipeline.project.default_environment_id
        else:
            del self.fields["environment"]
        self.fields["node"].choices = [(n, n) for n in nodes]


class PersonalOverrideForm(forms.Form):
    """Set your own value for one of the pipeline's variables in a development environment (the
    variables service validates it as it validates an override, and refuses other stages)."""

    environment = EnvironmentChoiceField(queryset=None, empty_label=None, label="Development environment")
    variable = forms.TypedChoiceField(choices=(), coerce=int, label="Variable")
    value = forms.CharField(required=False, strip=False, max_length=10_000, label="My value", help_text=VALUE_HELP)
    secret = forms.ModelChoiceField(
        queryset=None, required=False, label="My secret", help_text="Secret variables take a secret, never a value."
    )

    def __init__(self, user, pipeline, variables, *args, **kwargs):
        kwargs.setdefault("auto_id", "personal_%s")  # the page holds several forms: ids stay unique
        super().__init__(*args, **kwargs)
        organization = pipeline.project.organization
        self.environments = (
            Environment.objects.in_organization(organization.pk)
            .restrict(user)
            .filter(kind__in=PERSONAL_KINDS)
            .order_by("position", "name")
        )
        self.shows_environments = organization.has_environments_feature
        if self.shows_environments:
            self.fields["environment"].queryset = self.environments
        else:
            del self.fields["environment"]
        # The page's own list of the pipeline's variables (no query of its own); the service decides.
        self.variables = {v.pk: v for v in variables}
        self.fields["variable"].choices = [(v.pk, f"{v.name} ({v.type})") for v in variables]
        if any(v.type == VariableType.SECRET for v in variables):
            secrets = Secret.objects.restrict(user).in_organization(organization.pk).order_by("name")
            self.fields["secret"].queryset = secrets
        else:
            del self.fields["secret"]

    @property
    def shows_secret(self) -> bool:
        return "secret" in self.fields

    def clean_variable(self):
        return self.variables[self.cleaned_data["variable"]]
