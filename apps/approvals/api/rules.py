"""API for approval rules: the serializers (projects and environments named by slug, links checked
against the organization) and the viewset; saving and deleting go through the rules services."""

import re

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status, viewsets
from rest_framework.response import Response

from apps.approvals.filtersets import RuleFilter
from apps.core.api import ETagMixin, StrictFilterBackend, StrictOrderingFilter, StrictSearchFilter, StrictSerializer
from apps.core.errors import field_error
from apps.environments.models import Environment
from apps.pipelines.models import Project
from apps.pipelines.selectors import projects_for
from apps.tenancy.api import MemberOrganizationField

from .. import selectors, services
from ..models import ApprovalRule

User = get_user_model()

SLUG = re.compile(r"^[-a-zA-Z0-9_]{1,63}\Z")


# --- approval rules -----------------------------------------------------------------------------------


class ApprovalRuleSerializer(serializers.ModelSerializer):
    organization = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    environment = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    project = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True)
    project_slug = serializers.CharField(source="project.slug", read_only=True, allow_null=True, default=None)
    approver_group = serializers.SlugRelatedField(slug_field="name", read_only=True, allow_null=True)
    approver_users = serializers.SlugRelatedField(slug_field="username", many=True, read_only=True)
    extra_sources = serializers.SlugRelatedField(slug_field="slug", many=True, read_only=True)
    allowed_refs = serializers.ListField(child=serializers.CharField(), read_only=True)

    class Meta:
        model = ApprovalRule
        fields = [
            "id",
            "organization",
            "environment",
            "project",
            "project_slug",
            "name",
            "is_active",
            "required_approvals",
            "approver_group",
            "approver_users",
            "allow_self_approval",
            "exclude_version_author",
            "require_validation",
            "validation_max_age_hours",
            "require_git",
            "allowed_refs",
            "require_ticket",
            "wait_minutes",
            "expires_after_hours",
            "extra_sources",
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


def _environment_in(organization_id: int, slug: str, field: str) -> Environment:
    environment = Environment.objects.filter(organization_id=organization_id, slug=slug).first()
    if environment is None:
        raise field_error(field, f"No environment '{slug}' in this organization.")
    return environment


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
    attributes, many = {}, {}
    if "environment" in fields:
        attributes["environment"] = _environment_in(organization_id, fields["environment"], "environment")
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
        found = {e.slug: e for e in Environment.objects.filter(organization_id=organization_id, slug__in=slugs)}
        missing = [s for s in slugs if s not in found]
        if missing:
            raise field_error("extra_sources", f"No environment '{missing[0]}' in this organization.")
        many["extra_sources"] = [found[s] for s in slugs]
    return attributes, many


class ApprovalRuleViewSet(ETagMixin, viewsets.ModelViewSet):
    """What a promotion into an environment needs. Organization-wide rules are managed by the
    organization's owners and admins; a project's rules by those who manage the environment, and
    they may tighten the organization's rules but never loosen them. Reading needs view_environment."""

    queryset = ApprovalRule.objects.none()
    serializer_class = ApprovalRuleSerializer
    filterset_class = RuleFilter
    filter_backends = [StrictFilterBackend, StrictOrderingFilter, StrictSearchFilter]
    search_fields = ["name"]
    ordering_fields = ["name", "created_at", "updated_at", "required_approvals"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self):
        return selectors.rules_for_user(self.request.user)

    def _out(self, rule, code=status.HTTP_200_OK):
        rule = self.get_queryset().filter(pk=rule.pk).first() or rule
        return self.with_etag(Response(ApprovalRuleSerializer(rule).data, status=code), rule)

    @extend_schema(request=RuleCreateSerializer, responses={201: ApprovalRuleSerializer})
    def create(self, request):
        data = RuleCreateSerializer(data=request.data, context={"request": request})
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        organization = fields.pop("organization")
        attributes, many = _rule_links(request.user, organization.pk, fields)
        rule = ApprovalRule(organization=organization)
        for name, value in {**fields, **attributes}.items():
            if name not in ("approver_users", "extra_sources"):
                setattr(rule, name, value)
        rule = services.rule_save(
            actor=request.user,
            rule=rule,
            approver_users=many.get("approver_users", []),
            extra_sources=many.get("extra_sources", []),
        )
        return self._out(rule, status.HTTP_201_CREATED)

    @extend_schema(request=RuleUpdateSerializer, responses=ApprovalRuleSerializer)
    def partial_update(self, request, pk=None):
        data = RuleUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        with transaction.atomic():
            rule = self.locked_object()
            attributes, many = _rule_links(request.user, rule.organization_id, fields)
            for name, value in {**fields, **attributes}.items():
                if name not in ("approver_users", "extra_sources"):
                    setattr(rule, name, value)
            rule = services.rule_save(
                actor=request.user,
                rule=rule,
                approver_users=many.get("approver_users"),
                extra_sources=many.get("extra_sources"),
            )
        return self._out(rule)

    def destroy(self, request, pk=None):
        with transaction.atomic():
            services.rule_delete(actor=request.user, rule=self.locked_object())
        return Response(status=status.HTTP_204_NO_CONTENT)
