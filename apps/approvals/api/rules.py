"""API for approval rules: the serializers (projects and environments named by slug, links checked
against the organization) and the viewset; saving and deleting go through the rules services."""

import re
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.approvals.filtersets import RuleFilter
from apps.core.api import StrictFilterBackend, StrictOrderingFilter, StrictSearchFilter, StrictSerializer
from apps.core.errors import field_error
from apps.core.viewsets import ETagServiceViewSet, ServiceFamily
from apps.environments.api import environment_reference, environment_shown
from apps.pipelines.models import Project
from apps.pipelines.selectors import projects_for
from apps.tenancy.api import MemberOrganizationField, organization_shown, user_shown

from .. import selectors, services
from ..models import RULE_SETTINGS, ApprovalRule

User = get_user_model()

SLUG = re.compile(r"^[-a-zA-Z0-9_]{1,63}\Z")


# --- approval rules -----------------------------------------------------------------------------------


class ApprovalRuleSerializer(serializers.ModelSerializer):
    organization = organization_shown()
    environment = environment_shown()
    project = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True)
    project_slug = serializers.CharField(source="project.slug", read_only=True, allow_null=True, default=None)
    approver_group = serializers.SlugRelatedField(slug_field="name", read_only=True, allow_null=True)
    approver_users = user_shown(many=True)
    extra_sources = environment_shown(many=True)
    allowed_refs = serializers.ListField(child=serializers.CharField(), read_only=True)

    class Meta:
        model = ApprovalRule
        fields = [
            "id",
            "organization",
            "environment",
            "project",
            "project_slug",
            *RULE_SETTINGS,
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


@extend_schema_field(
    {
        "oneOf": [
            {"type": "integer", "minimum": 1},
            {"type": "string", "pattern": "^[-a-zA-Z0-9_]+$", "maxLength": 63},
        ],
        "nullable": True,
        "description": "The project's id or slug; null for an organization-wide rule.",
    }
)
class ProjectReferenceField(serializers.Field):
    """A project given by id or by slug (resolved within the rule's organization by the view)."""

    default_error_messages = {"invalid": "Give a project id or slug."}

    def to_internal_value(self, data):
        if isinstance(data, int) and not isinstance(data, bool) and data >= 1:
            return data
        if isinstance(data, str) and SLUG.match(data):
            return data
        self.fail("invalid")

    def to_representation(self, value):
        return value


class RuleUpdateSerializer(StrictSerializer):
    """The settings of a rule to change (every one optional)."""

    environment = serializers.SlugField(max_length=63, required=False, help_text="Target environment slug.")
    project = ProjectReferenceField(required=False, allow_null=True)
    name = serializers.CharField(max_length=100, required=False)
    is_active = serializers.BooleanField(required=False)
    required_approvals = serializers.IntegerField(min_value=0, max_value=10, required=False)
    approver_group = serializers.CharField(
        max_length=150, required=False, allow_null=True, help_text="Group name; only its members count."
    )
    approver_users = serializers.ListField(
        child=serializers.CharField(max_length=150),
        required=False,
        max_length=100,
        help_text="Usernames (organization members); only they count.",
    )
    allow_self_approval = serializers.BooleanField(required=False)
    exclude_version_author = serializers.BooleanField(required=False)
    require_validation = serializers.BooleanField(required=False)
    validation_max_age_hours = serializers.IntegerField(min_value=1, max_value=24 * 365, required=False)
    require_data_diff = serializers.BooleanField(required=False)
    require_git = serializers.BooleanField(required=False)
    allowed_refs = serializers.ListField(
        child=serializers.CharField(max_length=200), required=False, max_length=50, help_text='e.g. ["main", "v*"]'
    )
    require_ticket = serializers.CharField(
        max_length=200, required=False, allow_blank=True, help_text="Regular expression the ticket must match."
    )
    wait_minutes = serializers.IntegerField(min_value=0, max_value=7 * 24 * 60, required=False)
    expires_after_hours = serializers.IntegerField(min_value=0, max_value=24 * 90, required=False)
    extra_sources = serializers.ListField(
        child=serializers.SlugField(max_length=63),
        required=False,
        max_length=50,
        help_text="Environment slugs that may promote here besides the path's previous stage.",
    )


class RuleCreateSerializer(RuleUpdateSerializer):
    """A new rule: the organization, target environment and name; other settings default as in the model."""

    organization = MemberOrganizationField()
    environment = serializers.SlugField(max_length=63, help_text="Target environment slug.")
    name = serializers.CharField(max_length=100)


RULE_LINKS = ("environment", "project", "approver_group", "approver_users", "extra_sources")


_ENVIRONMENT = environment_reference()


def _project_in(user, organization_id: int, reference) -> Project | None:
    if reference is None:
        return None
    projects = projects_for(user).filter(organization_id=organization_id)
    project = (projects.filter(pk=reference) if isinstance(reference, int) else projects.filter(slug=reference)).first()
    if project is None:
        raise field_error("project", f"No project '{reference}' in this organization.")
    return project


def _rule_links(user, organization_id: int, fields: dict) -> tuple[dict, dict]:
    """Resolve the names the API takes (slugs, group name, usernames) into rows.
    Returns (attributes to set on the rule, many-to-many lists for the service)."""
    attributes: dict[str, Any] = {}
    many: dict[str, list[Any]] = {}
    if "environment" in fields:
        attributes["environment"] = _ENVIRONMENT.resolve(fields["environment"], organization_id, user, "environment")
    if "project" in fields:
        attributes["project"] = _project_in(user, organization_id, fields["project"])
    if "approver_group" in fields:
        name = fields["approver_group"]
        group = Group.objects.filter(name=name).first() if name is not None else None
        if name is not None and group is None:
            raise field_error("approver_group", f"No group named '{name}'.")
        attributes["approver_group"] = group
    if "approver_users" in fields:
        names = list(dict.fromkeys(fields["approver_users"]))
        users = {
            u.username: u
            for u in User.objects.filter(
                username__in=names, is_active=True, memberships__organization_id=organization_id
            )
        }
        missing = [n for n in names if n not in users]
        if missing:
            raise field_error("approver_users", f"No member named '{missing[0]}' in this organization.")
        many["approver_users"] = [users[n] for n in names]
    if "extra_sources" in fields:
        slugs = list(dict.fromkeys(fields["extra_sources"]))
        many["extra_sources"] = _ENVIRONMENT.resolve_many(slugs, organization_id, user, "extra_sources")
    return attributes, many


_LINKED_MANY = ("approver_users", "extra_sources")


class ApprovalRuleViewSet(ETagServiceViewSet):
    """What a promotion into an environment needs. Organization-wide rules are managed by the
    organization's owners and admins; a project's rules by those who manage the environment, and
    they may tighten the organization's rules but never loosen them. Reading needs view_environment."""

    serializer_class = ApprovalRuleSerializer
    create_serializer_class = RuleCreateSerializer
    update_serializer_class = RuleUpdateSerializer
    filterset_class = RuleFilter
    filter_backends = [StrictFilterBackend, StrictOrderingFilter, StrictSearchFilter]
    search_fields = ["name"]
    ordering_fields = ["name", "created_at", "updated_at", "required_approvals"]
    visible = selectors.rules_for_user
    writes = ServiceFamily("rule", delete=services.rule_delete)
    etag_on_create = True

    def answer(self, rule):
        rule = self.get_queryset().filter(pk=rule.pk).first() or rule
        return rule, ApprovalRuleSerializer(rule).data

    def create_object(self, fields):
        return self._save(ApprovalRule(organization=fields.pop("organization")), fields, unset=[])

    def update_object(self, rule, fields):
        return self._save(rule, fields, unset=None)

    def _save(self, rule, fields, unset):
        """Set the rule's settings and links (resolved in its organization) and save it through the service;
        a link list not given is `unset` ([] for a new rule, None to keep)."""
        attributes, many = _rule_links(self.request.user, rule.organization_id, fields)
        for name, value in {**fields, **attributes}.items():
            if name not in _LINKED_MANY:
                setattr(rule, name, value)
        links = {name: many.get(name, unset) for name in _LINKED_MANY}
        return services.rule_save(actor=self.request.user, rule=rule, **links)
