"""`python manage.py run_pipeline <pipeline> --environment <slug> --user <name> [--version N]
[--param name=value ...] [--timeout SECONDS]`: start a run, wait for its outcome, print it.

The run is created through services.run_create (same permissions and policy as the API) and
executed by a worker; this command only polls the row. It exits non-zero on a rejected, failed or
cancelled run, on a timeout (the run keeps going: cancel it through the API or admin) and on bad
input."""

import json
import time

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError

from apps.core.commands import DomainCommand, domain_message, seconds, whole_number
from apps.core.errors import DomainError
from apps.core.parsers import StrictJSONError, loads_strict
from apps.core.types import User
from apps.environments.models import Environment
from apps.pipelines.models import Pipeline
from apps.pipelines.selectors import pipeline_by_reference
from apps.runs import datadiff, services
from apps.runs.models import TERMINAL, Run, RunStatus, Trigger

POLL_SECONDS = 0.5


def parse_param(text: str) -> tuple[str, object]:
    """`name=value`; the value is read as JSON when it parses (42, true, "x", [1]) and as text otherwise."""
    name, sep, raw = text.partition("=")
    if not sep or not name.strip():
        raise CommandError(f"--param {text!r}: give name=value.")
    try:
        value = loads_strict(raw)
    except StrictJSONError:
        value = raw
    return name.strip(), value


class Command(DomainCommand):
    help = "Run a pipeline in an environment, wait for the outcome and print its status and metrics."

    def create_parser(self, prog_name, subcommand, **kwargs):
        # `--version N` picks the pipeline version; it replaces Django's own --version (the framework's).
        return super().create_parser(prog_name, subcommand, conflict_handler="resolve", **kwargs)

    def add_arguments(self, parser):
        parser.add_argument("pipeline", help="Pipeline id, or project-slug/pipeline-slug.")
        parser.add_argument("--environment", "-e", help="Environment slug (default: the project's default).")
        parser.add_argument("--user", "-u", required=True, help="Username the run is requested by (permissions).")
        parser.add_argument("--version", type=whole_number, help="Version number (default: deployed, else latest).")
        parser.add_argument(
            "--param", "-p", action="append", default=[], metavar="NAME=VALUE", help="Run-time override (repeatable)."
        )
        parser.add_argument("--sample", action="store_true", help="Apply the environment's sampling.")
        parser.add_argument("--timeout", type=seconds, default=600.0, help="Seconds to wait for the outcome (600).")

    def handle(
        self, *args, pipeline, environment=None, user, version=None, param=(), sample=False, timeout=600.0, **options
    ):
        actor = get_user_model().objects.filter(username=user, is_active=True).first()
        if actor is None:
            raise CommandError(f"No active user '{user}'.")
        parameters = dict(parse_param(p) for p in param)
        target = self._pipeline(actor, pipeline)
        env = self._environment(target, environment)
        chosen = None
        if version is not None:
            chosen = target.versions.filter(number=version).first()
            if chosen is None:
                raise CommandError(f"Pipeline '{target}' has no version {version}.")
        try:
            run = services.run_create(
                actor=actor,
                pipeline=target,
                environment=env,
                version=chosen,
                parameters=parameters,
                sample=sample,
                trigger=Trigger.MANUAL,
            )
        except DomainError as exc:
            raise CommandError(domain_message(exc)) from exc
        self.stdout.write(f"Run {run.pk}: {target} v{run.version.number} in '{run.environment.slug}' ({run.status})")
        run = self._wait(run, timeout)
        self._print_outcome(run)
        if run.status != RunStatus.SUCCEEDED:
            raise CommandError(f"Run {run.pk} {run.status}: {run.error or 'no reason given'}")

    def _pipeline(self, actor: User, reference: str) -> Pipeline:
        try:
            return pipeline_by_reference(actor, reference)
        except DomainError as exc:
            raise CommandError(f"{exc.message.removeprefix('pipeline: ')}") from exc

    def _environment(self, pipeline: Pipeline, slug: str | None) -> Environment | None:
        if slug is None:
            return None
        environment = Environment.objects.filter(organization_id=pipeline.project.organization_id, slug=slug).first()
        if environment is None:
            raise CommandError(f"No environment '{slug}' in the pipeline's organization.")
        return environment

    def _wait(self, run: Run, timeout: float) -> Run:
        deadline = time.monotonic() + timeout
        while True:
            run = Run.objects.select_related("version", "environment").get(pk=run.pk)
            if run.status in TERMINAL:
                return run
            if time.monotonic() >= deadline:
                raise CommandError(
                    f"Run {run.pk} is still {run.status} after {timeout:g} s (it keeps going; cancel it if needed)."
                )
            time.sleep(POLL_SECONDS)

    def _print_outcome(self, run: Run) -> None:
        style = self.style.SUCCESS if run.status == RunStatus.SUCCEEDED else self.style.ERROR
        took = ""
        if run.started_at and run.finished_at:
            took = f" in {(run.finished_at - run.started_at).total_seconds():.1f} s"
        self.stdout.write(style(f"Run {run.pk} {run.status}{took}"))
        for node_id, metrics in sorted((run.metrics or {}).items()):
            self.stdout.write(
                f"  {node_id}: {metrics.get('row_count')} rows into {metrics.get('table')}, "
                f"distinct keys {metrics.get('distinct_keys')}, duplicate keys {metrics.get('duplicate_key_count')}, "
                f"hash total {metrics.get('hash_total')}"
            )
            for name, profile in (metrics.get("columns") or {}).items():
                self.stdout.write(f"    {name}: {datadiff.profile_summary(profile)}")
        if run.baseline:
            summary = {k: v for k, v in run.baseline.items() if k != "data_diff"}
            self.stdout.write(f"  baseline: {json.dumps(summary, sort_keys=True)}")
            failing = datadiff.failures(run.baseline.get("data_diff"))
            if run.baseline.get("data_diff"):
                self.stdout.write(f"  data diff: {'; '.join(failing) if failing else 'every column passes'}")
        if run.error:
            self.stdout.write(f"  error: {run.error}")
