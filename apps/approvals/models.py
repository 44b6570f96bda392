"""Approval rules, promotion requests (with their frozen plan) and approval decisions."""

from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django_fsm import FSMField, FSMModelMixin, transition
from simple_history.models import HistoricalRecords

from apps.core.models import (
    FrozenDocumentAttribute,
    FrozenDocumentsMixin,
    TimeStampedModel,
    frozen_document_reference,
    json_list,
    optional_reference,
    user_reference,
)
from apps.core.types import User
from apps.environments.models import Environment
from apps.environments.querysets import EnvScopedQuerySet
from apps.pipelines.models import Pipeline, PipelineVersion, Project
from apps.runs.models import Deployment, Run
from apps.tenancy.models import Organization


def validate_ref_patterns(value):
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValidationError('Give a list of branch or tag patterns, e.g. ["main", "v*"].')
    if any(len(v) > 200 for v in value):
        raise ValidationError("A pattern is at most 200 characters.")


RULE_SETTINGS = (
    "name",
    "is_active",
    "required_approvals",
    "approver_group",
    "approver_users",
    "allow_self_approval",
    "exclude_version_author",
    "require_validation",
    "validation_max_age_hours",
    "require_data_diff",
    "require_git",
    "allowed_refs",
    "require_ticket",
    "wait_minutes",
    "expires_after_hours",
    "extra_sources",
)
"""A rule's settings after its target environment and project: what the admin form and the API show."""


class ApprovalRule(TimeStampedModel):
    """What a promotion into an environment needs. Organization-wide when `project` is empty; a
    project's rules add to the organization's (tighten, never loosen). All rules must be met."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="approval_rules")
    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="approval_rules")
    project = optional_reference(
        Project,
        on_delete=models.CASCADE,
        related_name="approval_rules",
        help_text="Empty: the organization's default rule for every project.",
    )
    name = models.CharField(max_length=100)
    is_active = models.BooleanField(default=True)
    required_approvals = models.PositiveSmallIntegerField(
        default=1, validators=[MaxValueValidator(10)], help_text="0 makes a gates-only rule."
    )
    approver_group = optional_reference(
        Group, help_text="Only members of this group (holding approve_promotion on the environment) count."
    )
    approver_users = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        blank=True,
        related_name="+",
        help_text="Only these users (holding approve_promotion on the environment) count.",
    )
    allow_self_approval = models.BooleanField(default=False)
    exclude_version_author = models.BooleanField(
        default=False, help_text="The author of the version being promoted cannot approve it."
    )
    require_validation = models.BooleanField(
        default=False, help_text="A passing run of this version in the source environment is needed."
    )
    validation_max_age_hours = models.PositiveIntegerField(default=24, validators=[MinValueValidator(1)])
    require_data_diff = models.BooleanField(
        default=False,
        help_text="The latest run of this version in the source environment (within validation_max_age_hours) "
        "must meet its column expectations and stay within tolerance of the production baseline.",
    )
    require_git = models.BooleanField(default=False, help_text="The version's commit must be merged or tagged.")
    allowed_refs = json_list(
        validators=[validate_ref_patterns],
        help_text='Branch/tag patterns, e.g. ["main", "v*"].',
    )
    require_ticket = models.CharField(
        max_length=200, blank=True, help_text=r"A regular expression the ticket must match, e.g. ^OPS-\d+$."
    )
    wait_minutes = models.PositiveIntegerField(default=0, validators=[MaxValueValidator(7 * 24 * 60)])
    expires_after_hours = models.PositiveIntegerField(
        default=72, validators=[MaxValueValidator(24 * 90)], help_text="0: pending requests never expire."
    )
    extra_sources = models.ManyToManyField(
        Environment,
        blank=True,
        related_name="+",
        help_text="Environments that may promote here besides the one whose 'promotes to' is this environment.",
    )

    objects = EnvScopedQuerySet.as_manager()

    history = HistoricalRecords(m2m_fields=[approver_users, extra_sources])

    class Meta:
        ordering = ["environment__position", "name"]
        constraints = [
            models.UniqueConstraint(fields=["environment", "project", "name"], name="uniq_rule_name"),
            models.UniqueConstraint(
                fields=["environment", "name"], condition=Q(project__isnull=True), name="uniq_org_rule_name"
            ),
        ]

    def __str__(self):
        scope = self.project.slug if self.project else "all projects"
        return f"{self.name} → {self.environment.slug} ({scope})"


class PromotionState(models.TextChoices):
    PENDING = "pending"
    APPROVED = "approved"
    DEPLOYING = "deploying"
    DEPLOYED = "deployed"
    ROLLED_BACK = "rolled_back"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    FAILED = "failed"


OPEN_STATES = (PromotionState.PENDING, PromotionState.APPROVED, PromotionState.DEPLOYING)


class WatchState(models.TextChoices):
    NONE = "", "not watched"
    WATCHING = "watching"
    PASSED = "passed"
    ROLLED_BACK = "rolled_back"


class PromotionRequestQuerySet(EnvScopedQuerySet):
    """Requests into environments where the user holds `action` (default view), and their own
    requests into environments where they may request promotion, even into a stage they may not
    otherwise view."""

    environment_path = "target"

    def restrict(self, user, action=None):
        from apps.environments import permissions as perms
        from apps.tenancy.permissions import sees_all

        if sees_all(user):
            return self
        if not getattr(user, "is_authenticated", False):
            return self.none()
        requestable = Environment.objects.restrict(user, perms.REQUEST_PROMOTION).values("pk")
        own = self.filter(requested_by=user, target__in=requestable)
        return super().restrict(user, action) | own


S = PromotionState


def _expires(request: "PromotionRequest") -> bool:
    """expire's condition: only a request with an expiry expires."""
    return request.expires_at is not None


def _freeze_override_unconfirmed(request: "PromotionRequest") -> bool:
    """override_freeze's condition: a confirmed override is not asked for again."""
    return not request.freeze_override_confirmed_by_id


PROMOTION_PROGRESS = (
    "expires_at",
    "approved_at",
    "deploy_after",
    "decided_at",
    "deployed_at",
    "deployment",
    "blocked_reason",
    "failure_reason",
    "attempts",
)
"""How far a promotion request got, in the order the admin and the API show it."""

PROMOTION_FREEZE_OVERRIDE = (
    "freeze_override_reason",
    "freeze_override_requested_by",
    "freeze_override_confirmed_by",
    "freeze_override_at",
)
"""A break-glass deploy inside a freeze window: who asked, who confirmed, why and when."""


class PromotionRequest(FrozenDocumentsMixin, FSMModelMixin, models.Model):
    """A request to deploy a version into the next environment, with the plan frozen at creation
    (re-frozen when the version or the target's configuration changes). The row is the outbox:
    an approved request is deployed by a worker, and the beat sweep finds any left behind.

    The state machine of DESIGN.md §4 is the transition methods below (django-fsm-2): the state is
    protected and changes only through them; the services lock the row, call one, and save."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="promotion_requests")
    pipeline = models.ForeignKey(Pipeline, on_delete=models.CASCADE, related_name="promotion_requests")
    version = models.ForeignKey(PipelineVersion, on_delete=models.PROTECT, related_name="promotion_requests")
    source = models.ForeignKey(Environment, on_delete=models.PROTECT, related_name="promotions_out")
    target = models.ForeignKey(Environment, on_delete=models.PROTECT, related_name="promotions_in")
    requested_by = user_reference(blank=False)
    reason = models.TextField(max_length=4000, blank=True)
    ticket = models.CharField(max_length=100, blank=True)
    compare_url = models.URLField(max_length=1000, blank=True)
    attached_runs = models.ManyToManyField(Run, blank=True, related_name="promotion_requests")
    state = FSMField(
        max_length=20, choices=PromotionState.choices, default=PromotionState.PENDING, db_index=True, protected=True
    )
    # The frozen plan is immutable, and large at scale: stored once (compressed) outside this table, so
    # lists, changelists and history rows carry only its digest.
    plan_document = frozen_document_reference()
    plan = FrozenDocumentAttribute("plan_document")
    plan_hash = models.CharField(max_length=71, blank=True)
    plan_frozen_at = models.DateTimeField(null=True, blank=True)
    idempotency_key = models.CharField(max_length=200, blank=True)
    idempotency_fingerprint = models.CharField(max_length=64, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    approved_at = models.DateTimeField(null=True, blank=True)
    deploy_after = models.DateTimeField(null=True, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    deployed_at = models.DateTimeField(null=True, blank=True)
    deployment = optional_reference(Deployment)
    blocked_reason = models.CharField(max_length=500, blank=True)
    failure_reason = models.TextField(max_length=4000, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    freeze_override_reason = models.CharField(max_length=500, blank=True)
    freeze_override_requested_by = user_reference()
    freeze_override_confirmed_by = user_reference()
    freeze_override_at = models.DateTimeField(null=True, blank=True)
    last_reminded_at = models.DateTimeField(null=True, blank=True)
    watch_state = models.CharField(max_length=20, choices=WatchState.choices, default=WatchState.NONE, blank=True)

    objects = PromotionRequestQuerySet.as_manager()

    history = HistoricalRecords(excluded_fields=["lease_expires_at", "last_reminded_at", "updated_at"])

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["organization", "state"], name="promotion_org_state")]
        constraints = [
            models.UniqueConstraint(
                fields=["requested_by", "idempotency_key"],
                condition=~Q(idempotency_key=""),
                name="uniq_promotion_idempotency_key",
            ),
            models.UniqueConstraint(
                fields=["pipeline", "target"], condition=Q(state="deploying"), name="one_promotion_deploying"
            ),
            models.UniqueConstraint(
                fields=["pipeline", "target", "version"],
                condition=Q(state__in=["pending", "approved", "deploying"]),
                name="one_open_request_per_version",
            ),
        ]

    def __str__(self):
        return (
            f"#{self.pk} {self.pipeline} v{self.version.number}: {self.source.slug} → {self.target.slug} ({self.state})"
        )

    # --- transitions (each sets the bookkeeping its target state needs; the caller saves) ---

    @transition(field=state, source=S.PENDING, target=S.APPROVED)
    def approve(self, *, now, wait_minutes: int) -> None:
        """Every rule is met: approved, deployable after the rules' longest wait."""
        self.approved_at = self.decided_at = now
        self.deploy_after = now + timedelta(minutes=wait_minutes)

    @transition(field=state, source=S.APPROVED, target=S.PENDING)
    def reopen(self) -> None:
        """The plan changed, or the approvals no longer meet the rules: approvers look again."""
        self.approved_at = self.deploy_after = None

    @transition(field=state, source=S.PENDING, target=S.REJECTED)
    def reject(self, *, now) -> None:
        self.decided_at = now

    @transition(field=state, source=[S.PENDING, S.APPROVED], target=S.CANCELLED)
    def cancel(self, *, now) -> None:
        self.decided_at = now

    @transition(field=state, source=S.PENDING, target=S.EXPIRED, conditions=[_expires])  # type: ignore[list-item]  # django-fsm's stubs take Callable[[Model], bool]
    def expire(self, *, now) -> None:
        """A pending request past its rules' expiry (one without an expiry never expires)."""
        self.decided_at = now

    @transition(field=state, source=[S.APPROVED, S.DEPLOYING], target=S.DEPLOYING)
    def start_deploying(self, *, lease_until) -> None:
        """A worker takes the request (or takes over one whose worker died): one more attempt."""
        self.blocked_reason = ""
        self.attempts += 1
        self.lease_expires_at = lease_until

    @transition(field=state, source=S.DEPLOYING, target=S.DEPLOYED)
    def finish_deploying(self, *, deployment, now, watch: bool) -> None:
        self.deployment, self.deployed_at, self.lease_expires_at = deployment, now, None
        if watch:
            self.watch_state = WatchState.WATCHING

    @transition(field=state, source=[S.DEPLOYING, S.APPROVED], target=S.FAILED)
    def fail(self, *, reason: str) -> None:
        self.failure_reason, self.lease_expires_at = reason[:4000], None

    @transition(field=state, source=S.FAILED, target=S.APPROVED)
    def retry(self, *, now) -> None:
        self.failure_reason, self.deploy_after = "", now

    @transition(field=state, source=S.DEPLOYED, target=S.ROLLED_BACK)
    def roll_back(self) -> None:
        if self.watch_state == WatchState.WATCHING:
            self.watch_state = WatchState.ROLLED_BACK

    @transition(
        field=state,
        source=[S.PENDING, S.APPROVED, S.FAILED],
        target=None,
        conditions=[_freeze_override_unconfirmed],  # type: ignore[list-item]  # django-fsm's stubs take Callable[[Model], bool]
    )
    def override_freeze(self, *, actor: User, reason: str, now) -> None:
        """Break-glass while the request may still deploy (the state does not change): the first
        person asks, a second confirms."""
        if self.freeze_override_requested_by_id is None:
            self.freeze_override_requested_by, self.freeze_override_reason = actor, reason
        else:
            self.freeze_override_confirmed_by, self.freeze_override_at = actor, now

    def available_transitions(self) -> set[str]:
        """Names of the transition methods the current state allows (what screens may offer)."""
        transitions = self.get_available_state_transitions()  # type: ignore[attr-defined]  # django-fsm adds it
        return {t.name for t in transitions}


class Decision(models.TextChoices):
    APPROVE = "approve"
    REJECT = "reject"


class ApprovalDecisionQuerySet(models.QuerySet):
    """Decisions on the requests the user sees."""

    def restrict(self, user, action=None):
        return self.filter(request__in=PromotionRequest.objects.restrict(user, action).values("pk"))

    def in_organization(self, organization):
        return self.filter(request__organization=organization)


class ApprovalDecision(models.Model):
    """One person's decision on a request, given against the plan hash they saw. A decision made
    against an earlier plan no longer counts; deciding again replaces it (history keeps both)."""

    request = models.ForeignKey(PromotionRequest, on_delete=models.CASCADE, related_name="decisions")
    approver = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    decision = models.CharField(max_length=10, choices=Decision.choices)
    comment = models.TextField(max_length=4000, blank=True)
    plan_hash = models.CharField(max_length=71)
    decided_at = models.DateTimeField()

    objects = ApprovalDecisionQuerySet.as_manager()

    history = HistoricalRecords()

    class Meta:
        ordering = ["decided_at", "id"]
        constraints = [models.UniqueConstraint(fields=["request", "approver"], name="one_decision_per_approver")]

    def __str__(self):
        return f"{self.approver} {self.decision}d #{self.request_id}"
