"""Forms of the screens: they parse and label input; the services decide (their errors are put back
on the form by `add_domain_error`)."""

import uuid

from django import forms

from apps.approvals.models import PromotionState
from apps.environments import permissions as perms
from apps.environments.models import Environment
from apps.pipelines.selectors import pipelines_for, projects_for, versions_of
from apps.runs.models import RunStatus
from apps.runs.selectors import runs_for

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
