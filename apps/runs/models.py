"""Deployments, schedules, runs, and triggers with their fires (downstream orchestration)."""

from django.db import models
from django.db.models import Q
from django_fsm import RETURN_VALUE, FSMField, FSMModelMixin, transition
from simple_history.models import HistoricalRecords

from apps.core.models import (
    FrozenDocumentAttribute,
    FrozenDocumentsMixin,
    TimeStampedModel,
    frozen_document_reference,
    optional_reference,
    user_reference,
)
from apps.environments.models import Environment, validate_cron, validate_timezone
from apps.environments.querysets import EnvScopedQuerySet
from apps.pipelines.models import Pipeline, PipelineVersion
from apps.secrets.models import secret_reference

DEPLOYMENT_RECORD = (
    "version",
    "environment",
    "is_active",
    "deployed_by",
    "promotion_request_id",
    "previous",
)
"""What a deployment records after its pipeline: what the admin and the API show."""


class Deployment(FrozenDocumentsMixin, models.Model):
    """Which version of a pipeline an environment runs. Exactly one is active per pair."""

    pipeline = models.ForeignKey(Pipeline, on_delete=models.CASCADE, related_name="deployments")
    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="deployments")
    version = models.ForeignKey(PipelineVersion, on_delete=models.PROTECT, related_name="deployments")
    deployed_by = user_reference(blank=False)
    # The promotion request that deployed it (the approvals app sits above this one: a plain id).
    promotion_request_id = models.PositiveBigIntegerField(null=True, blank=True)
    previous = optional_reference("self")
    is_active = models.BooleanField(default=True)
    note = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    deactivated_at = models.DateTimeField(null=True, blank=True)
    # The configuration it was deployed with (resolved, secrets as references), stored once at deploy
    # time: the next promotion's "before" is read from here instead of rebuilt from history.
    resolved_document = frozen_document_reference()
    resolved = FrozenDocumentAttribute("resolved_document")

    objects = EnvScopedQuerySet.as_manager()

    history = HistoricalRecords()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["pipeline", "environment"], condition=Q(is_active=True), name="one_active_deployment"
            )
        ]

    def __str__(self):
        return f"{self.pipeline} v{self.version.number} → {self.environment.slug}"


class Schedule(TimeStampedModel):
    """Runs a pipeline in an environment on a cron schedule (switched on by deploying)."""

    pipeline = models.ForeignKey(Pipeline, on_delete=models.CASCADE, related_name="schedules")
    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="schedules")
    cron = models.CharField(max_length=100, validators=[validate_cron])
    timezone = models.CharField(max_length=64, default="UTC", validators=[validate_timezone])
    enabled = models.BooleanField(default=False)
    owner = user_reference(blank=False)
    last_fired_for = models.DateTimeField(null=True, blank=True, editable=False)

    objects = EnvScopedQuerySet.as_manager()

    history = HistoricalRecords(excluded_fields=["last_fired_for"])

    class Meta:
        ordering = ["pipeline", "environment"]

    def __str__(self):
        return f"{self.pipeline} in {self.environment.slug}: {self.cron} ({self.timezone})"


class RunStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


TERMINAL = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.REJECTED, RunStatus.CANCELLED)


class Trigger(models.TextChoices):
    MANUAL = "manual"
    SCHEDULE = "schedule"
    API = "api"
    VALIDATION = "validation"
    TRIGGER = "trigger", "on success of another pipeline"
    WEBHOOK = "webhook", "inbound webhook"


class Executor(models.TextChoices):
    BUILTIN = "builtin", "Built-in (Celery worker)"
    EXTERNAL = "external", "External engine (claims through the API)"


R = RunStatus


def _not_cancel_requested(run: "Run") -> bool:
    """claim's condition: a run asked to stop is not taken."""
    return not run.cancel_requested


RUN_LIFECYCLE = (
    "claimed_by",
    "cancel_requested",
    "attempts",
    "created_at",
    "started_at",
    "finished_at",
)
"""Who runs a run and when: what the admin and the API show after its outcome."""


class Run(FSMModelMixin, models.Model):
    """One execution of a pipeline version in an environment. The row is the outbox: a queued run
    is dispatched on commit, and the beat sweep re-dispatches runs left queued or whose worker died.

    The status is protected and changes only through the transition methods below (django-fsm-2);
    the services lock the row, call one, and save."""

    pipeline = models.ForeignKey(Pipeline, on_delete=models.CASCADE, related_name="runs")
    version = models.ForeignKey(PipelineVersion, on_delete=models.PROTECT, related_name="runs")
    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="runs")
    deployment = optional_reference(Deployment, related_name="runs")
    trigger = models.CharField(max_length=20, choices=Trigger.choices, default=Trigger.MANUAL)
    # The run whose success started this one (an on-success PipelineTrigger).
    upstream = optional_reference("self", related_name="downstream")
    executor = models.CharField(max_length=20, choices=Executor.choices, default=Executor.BUILTIN)
    requested_by = user_reference(blank=False)
    status = FSMField(max_length=20, choices=RunStatus.choices, default=RunStatus.QUEUED, db_index=True, protected=True)
    parameters = models.JSONField(default=dict, blank=True)
    sample = models.BooleanField(default=False)
    resolved = models.JSONField(default=dict, blank=True, help_text="Resolved configuration, secrets redacted.")
    metrics = models.JSONField(default=dict, blank=True)
    baseline = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True, max_length=4000)
    log_excerpt = models.TextField(blank=True, max_length=20000)
    claimed_by = models.CharField(max_length=200, blank=True)
    cancel_requested = models.BooleanField(default=False)
    attempts = models.PositiveSmallIntegerField(default=0)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    idempotency_key = models.CharField(max_length=200, blank=True)
    idempotency_fingerprint = models.CharField(max_length=64, blank=True, editable=False)

    objects = EnvScopedQuerySet.as_manager()

    # Never loaded by a list, changelist or list page (apps.core.models.without_blobs).
    HEAVY_FIELDS = ("resolved", "metrics", "baseline", "log_excerpt")

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["pipeline", "environment", "status"], name="run_pipeline_env_status")]
        constraints = [
            models.UniqueConstraint(
                fields=["requested_by", "idempotency_key"],
                condition=~Q(idempotency_key=""),
                name="uniq_run_idempotency_key",
            )
        ]

    def __str__(self):
        return f"run {self.pk} of {self.pipeline} in {self.environment.slug} ({self.status})"

    # --- transitions (the caller saves) ---

    @transition(field=status, source=R.QUEUED, target=R.REJECTED)
    def reject_by_policy(self, *, error: str, now) -> None:
        """Recorded, never executed: the runtime policy forbids what the run would write."""
        self.error, self.finished_at = error[:4000], now

    @transition(field=status, source=R.QUEUED, target=R.CANCELLED)
    @transition(field=status, source=R.RUNNING, target=None)
    def cancel(self, *, now) -> None:
        """A queued run is cancelled at once; a running one is asked to stop at its next batch."""
        self.cancel_requested = True
        if self.status == R.QUEUED:
            self.finished_at = now

    @transition(field=status, source=R.QUEUED, target=R.RUNNING, conditions=[_not_cancel_requested])  # type: ignore[list-item]  # django-fsm's stubs take Callable[[Model], bool]
    def claim(self, *, claimer: str, now, lease_until) -> None:
        """A worker or an external engine takes the run: one more attempt, under a lease."""
        self.claimed_by, self.started_at = claimer, self.started_at or now
        self.attempts += 1
        self.lease_expires_at = lease_until

    @transition(field=status, source=R.RUNNING, target=RETURN_VALUE(R.SUCCEEDED, R.FAILED, R.REJECTED, R.CANCELLED))
    def finish(self, *, status: str, metrics=None, error: str = "", log: str = "", now) -> str:
        self.metrics, self.error, self.log_excerpt = metrics or {}, error[:4000], log[-20000:]
        self.finished_at, self.lease_expires_at = now, None
        return status

    @transition(field=status, source=R.RUNNING, target=RETURN_VALUE(R.QUEUED, R.CANCELLED, R.FAILED))
    def reclaim(self, *, now, max_attempts: int) -> str:
        """The worker (or external engine) stopped renewing its lease: cancel the run if a cancel
        was asked for, fail it after `max_attempts`, else queue it again for anyone to claim."""
        if self.cancel_requested:
            self.error = "Cancelled."
        elif self.attempts >= max_attempts:
            self.error = (
                "The executor stopped reporting."
                if self.executor == Executor.EXTERNAL
                else "The worker died too many times."
            )
        else:
            self.claimed_by = ""
            return R.QUEUED
        self.finished_at, self.lease_expires_at = now, None
        return R.CANCELLED if self.cancel_requested else R.FAILED


class ScheduleFireQuerySet(EnvScopedQuerySet):
    environment_path = "schedule__environment"


class ScheduleFire(models.Model):
    """One tick of a schedule. The unique constraint makes a tick fire once, whatever beats race."""

    schedule = models.ForeignKey(Schedule, on_delete=models.CASCADE, related_name="fires")
    scheduled_for = models.DateTimeField()
    run = models.OneToOneField(Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="schedule_fire")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ScheduleFireQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["schedule", "scheduled_for"], name="one_fire_per_tick")]

    def __str__(self):
        return f"{self.schedule_id}@{self.scheduled_for:%Y-%m-%d %H:%M}"


class TriggerKind(models.TextChoices):
    ON_SUCCESS = "on_success", "on success of another pipeline"
    WEBHOOK = "webhook", "inbound webhook"


class PipelineTrigger(TimeStampedModel):
    """Starts a run of a pipeline in an environment when another pipeline succeeds there, or when a
    signed webhook arrives at its URL. Like schedules, off in production and protected stages until
    a deployment switches it on; `switched_on_by` is that deployment (a rollback of it switches the
    trigger off again)."""

    pipeline = models.ForeignKey(Pipeline, on_delete=models.CASCADE, related_name="triggers")
    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="triggers")
    kind = models.CharField(max_length=20, choices=TriggerKind.choices)
    upstream_pipeline = optional_reference(
        Pipeline,
        on_delete=models.CASCADE,
        related_name="downstream_triggers",
        help_text="On success of: its succeeded runs in this environment start this pipeline.",
    )
    # The webhook's URL part: unguessable, but not what authenticates (the signature does).
    token = models.CharField(max_length=64, unique=True, null=True, blank=True, editable=False)
    signing_secret = secret_reference(
        help_text="Signs the webhook's body (HMAC-SHA256 over the timestamp and the body)."
    )
    enabled = models.BooleanField(default=False)
    switched_on_by = optional_reference(Deployment, editable=False)
    owner = user_reference(blank=False)

    objects = EnvScopedQuerySet.as_manager()

    # The token is half of a capability URL: no history keeps a credential column
    # (tests/secrets/test_boundary.py).
    history = HistoricalRecords(excluded_fields=["token"])

    class Meta:
        ordering = ["pipeline", "environment", "id"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(kind="on_success") & Q(upstream_pipeline__isnull=False) & Q(token__isnull=True))
                | (Q(kind="webhook") & Q(upstream_pipeline__isnull=True) & Q(token__isnull=False)),
                name="trigger_kind_fields",
            ),
            models.UniqueConstraint(
                fields=["pipeline", "environment", "upstream_pipeline"],
                condition=Q(kind="on_success"),
                name="one_trigger_per_upstream",
            ),
        ]

    def __str__(self):
        what = f"on success of {self.upstream_pipeline}" if self.kind == TriggerKind.ON_SUCCESS else "on webhook"
        return f"{self.pipeline} in {self.environment.slug} {what}"


class TriggerFireQuerySet(EnvScopedQuerySet):
    environment_path = "trigger__environment"


class TriggerFire(models.Model):
    """The outbox of a trigger: one row per upstream success (or accepted webhook delivery). Its
    unique constraints make each start its downstream run exactly once, whatever retries, duplicate
    deliveries or concurrent workers happen; `run` is set when the run was created."""

    trigger = models.ForeignKey(PipelineTrigger, on_delete=models.CASCADE, related_name="fires")
    upstream = optional_reference(Run, on_delete=models.CASCADE, related_name="trigger_fires")
    # A webhook delivery's signature: the same signed delivery inside the replay window is refused.
    delivery = models.CharField(max_length=80, blank=True)
    run = models.OneToOneField(Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="trigger_fire")
    error = models.CharField(max_length=1000, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    fired_at = models.DateTimeField(null=True, blank=True)

    objects = TriggerFireQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["upstream", "trigger"], condition=Q(upstream__isnull=False), name="one_fire_per_upstream_run"
            ),
            models.UniqueConstraint(
                fields=["trigger", "delivery"], condition=~Q(delivery=""), name="one_fire_per_webhook_delivery"
            ),
        ]
        indexes = [models.Index(fields=["fired_at"], name="trigger_fire_pending")]

    def __str__(self):
        return f"{self.trigger_id} ← {self.upstream_id or self.delivery[:12]}"
