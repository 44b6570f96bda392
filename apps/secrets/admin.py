"""Admin for secrets: metadata, history and a write-only value, every write through the services.

The value field is a password input that is never pre-filled or rendered back (not even after a
form error); leaving it blank on change keeps the stored value. Add, change and delete run the
services (in a rolled-back savepoint first, so refusals are form errors or messages, never 500s).
Non-superuser staff see and change only the secrets of organizations they administer."""

from django import forms
from django.contrib import admin
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters

from apps.core.admin import ServiceModelAdmin, formsets_saved_by_services
from apps.environments.models import Environment
from apps.tenancy.admin import OrganizationScopedAdmin

from . import providers, services
from .models import Secret

ADD_FIELDS = ["organization", "name", "provider", "value", "reference", "allowed_environments", "description"]
CHANGE_FIELDS = [
    "organization",
    "name",
    "provider",
    "value",
    "reference",
    "allowed_environments",
    "description",
    "fingerprint",
    "rotated_at",
    "created_by",
    "created_at",
    "updated_at",
]
CHANGE_READONLY = [
    "organization",
    "name",
    "provider",
    "fingerprint",
    "rotated_at",
    "created_by",
    "created_at",
    "updated_at",
]


class SecretAdminForm(forms.ModelForm):
    value = forms.CharField(
        required=False,
        strip=False,
        max_length=services.MAX_VALUE_LENGTH,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Write-only. Local provider: the value to encrypt. On change, leave empty to keep the stored value.",
    )
    provider = forms.ChoiceField(choices=())

    class Meta:
        model = Secret
        fields = ["organization", "name", "provider", "reference", "allowed_environments", "description"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # A value is never shown back, whatever the caller put in `initial`.
        self.initial.pop("value", None)
        if "provider" in self.fields:
            self.fields["provider"].choices = [(name, name) for name in sorted(providers.registry())]


@admin.register(Secret)
class SecretAdmin(OrganizationScopedAdmin, ServiceModelAdmin):
    form = SecretAdminForm
    create_requires = ("organization",)
    service_decides_cascade = False  # a referenced secret is protected; deleting asks the usual permissions
    list_display = ["name", "organization", "provider", "fingerprint", "rotated_at", "environments"]
    list_filter = [
        ("organization", admin.RelatedOnlyFieldListFilter),
        "provider",
        ("allowed_environments", admin.RelatedOnlyFieldListFilter),
        "rotated_at",
    ]
    search_fields = ["name", "description", "reference", "organization__name", "organization__slug"]
    list_select_related = ["organization"]
    filter_horizontal = ["allowed_environments"]
    object_history_template = "simple_history/object_history.html"

    # Error reports (ADMINS mail, the debug page) must not carry the value either.
    @method_decorator(sensitive_post_parameters("value"))
    def add_view(self, request, form_url="", extra_context=None):
        return super().add_view(request, form_url, extra_context)

    @method_decorator(sensitive_post_parameters("value"))
    def change_view(self, request, object_id, form_url="", extra_context=None):
        return super().change_view(request, object_id, form_url, extra_context)

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("allowed_environments")

    @admin.display(description="allowed environments")
    def environments(self, obj) -> str:
        return ", ".join(sorted(environment.slug for environment in obj.allowed_environments.all())) or "—"

    def get_fields(self, request, obj=None):
        return ADD_FIELDS if obj is None else CHANGE_FIELDS

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else CHANGE_READONLY

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        field = form.base_fields.get("allowed_environments")
        if field is not None:
            if obj is not None:
                field.queryset = Environment.objects.in_organization(obj.organization_id)
            else:
                field.queryset = Environment.objects.administered_by(request.user).select_related("organization")
        return form

    # --- writes through the services ---

    def _create_kwargs(self, request, data) -> dict:
        return {
            "actor": request.user,
            "organization": data["organization"],
            "name": data["name"],
            "provider": data["provider"],
            "value": data.get("value") or None,
            "reference": data.get("reference") or "",
            "allowed_environments": list(data.get("allowed_environments") or []),
            "description": data.get("description") or "",
        }

    def _update_kwargs(self, request, instance, form) -> dict:
        data = form.cleaned_data
        changes = {"actor": request.user, "secret": instance}
        if data.get("value"):
            changes["value"] = data["value"]  # blank means: keep the stored value
        for name in ("reference", "description"):
            if name in form.changed_data:
                changes[name] = data.get(name) or ""
        if "allowed_environments" in form.changed_data:
            changes["allowed_environments"] = list(data.get("allowed_environments") or [])
        return changes

    def service_create(self, request, cleaned_data):
        return services.secret_create(**self._create_kwargs(request, cleaned_data))

    def service_update(self, request, obj, form):
        return services.secret_update(**self._update_kwargs(request, obj, form))

    def service_delete(self, request, obj) -> None:
        # A secret that configuration still references is refused (a message before Django deletes).
        services.secret_delete(actor=request.user, secret=obj)

    def save_related(self, request, form, formsets, change):
        """The services set the allowed environments (with history); the form must not write them again."""
        formsets_saved_by_services(formsets)
