"""`python manage.py promote`: request a promotion, or decide one, through the same services as the
API and the screens (same permissions, rules and state machine).

    manage.py promote --as dev --pipeline 7 --version 3 --from staging [--to production]
                      [--reason "..."] [--ticket OPS-12] [--idempotency-key KEY]
    manage.py promote --approve 12 --as prodder [--comment "..."] [--plan-hash sha256:...]
    manage.py promote --reject 12 --as prodder --comment "..."

`--pipeline` takes an id or project-slug/pipeline-slug. Bad input, a refused permission and a
transition the state machine does not allow all exit non-zero with the reason."""

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError

from apps.approvals import services
from apps.approvals.models import PromotionRequest
from apps.core.commands import DomainCommand, domain_message, whole_number
from apps.core.errors import DomainError
from apps.core.types import User
from apps.environments.models import Environment
from apps.pipelines.models import Pipeline
from apps.pipelines.selectors import pipeline_by_reference

CREATE_OPTIONS = ("pipeline", "version", "source", "target", "reason", "ticket", "idempotency_key")


class Command(DomainCommand):
    help = "Request promotion of a pipeline version into the next environment, or approve/reject a request."

    def create_parser(self, prog_name, subcommand, **kwargs):
        # `--version N` is the pipeline version; it replaces Django's own --version (the framework's).
        return super().create_parser(prog_name, subcommand, conflict_handler="resolve", **kwargs)

    def add_arguments(self, parser):
        parser.add_argument(
            "--as", dest="as_user", required=True, metavar="USER", help="Username acting (permissions)."
        )
        decide = parser.add_mutually_exclusive_group()
        decide.add_argument("--approve", type=whole_number, metavar="ID", help="Approve promotion request ID.")
        decide.add_argument(
            "--reject", type=whole_number, metavar="ID", help="Reject promotion request ID (needs --comment)."
        )
        parser.add_argument("--comment", default="", help="Comment on the decision.")
        parser.add_argument("--plan-hash", default="", help="Approve only if the plan is still this one.")
        parser.add_argument("--pipeline", help="Pipeline id, or project-slug/pipeline-slug.")
        parser.add_argument("--version", type=whole_number, help="Version number to promote.")
        parser.add_argument("--from", dest="source", metavar="SLUG", help="Source environment slug.")
        parser.add_argument(
            "--to", dest="target", metavar="SLUG", help="Target (default: where the source promotes to)."
        )
        parser.add_argument("--reason", default="", help="Why (shown to approvers).")
        parser.add_argument("--ticket", default="", help="Change ticket (some rules require one).")
        parser.add_argument(
            "--idempotency-key", default="", help="A retried command with the same key does nothing new."
        )

    def handle(self, *args, as_user, approve=None, reject=None, **options):
        actor = get_user_model().objects.filter(username=as_user, is_active=True).first()
        if actor is None:
            raise CommandError(f"No active user '{as_user}'.")
        try:
            if approve is not None or reject is not None:
                given = [f"--{name.replace('_', '-')}" for name in CREATE_OPTIONS if options.get(name)]
                if given:
                    raise CommandError(f"{', '.join(given)}: not used when deciding a request.")
                request = self._decide(actor, approve, reject, options)
            else:
                if options["comment"] or options["plan_hash"]:
                    raise CommandError("--comment and --plan-hash go with --approve or --reject.")
                request = self._request(actor, options)
        except DomainError as exc:
            raise CommandError(domain_message(exc)) from exc
        self._print(request)

    def _request(self, actor: User, options) -> PromotionRequest:
        missing = [
            flag
            for flag, name in (("--pipeline", "pipeline"), ("--version", "version"), ("--from", "source"))
            if options.get(name) in (None, "")
        ]
        if missing:
            raise CommandError(f"To request a promotion give {', '.join(missing)} (or --approve/--reject ID).")
        pipeline = self._pipeline(actor, options["pipeline"])
        version = pipeline.versions.filter(number=options["version"]).first()
        if version is None:
            raise CommandError(f"Pipeline '{pipeline.slug}' has no version {options['version']}.")
        organization_id = pipeline.project.organization_id
        request, created = services.promotion_request_create(
            actor=actor,
            pipeline=pipeline,
            version=version,
            source=self._environment(organization_id, options["source"], "--from"),
            target=self._environment(organization_id, options["target"], "--to") if options.get("target") else None,
            reason=options["reason"],
            ticket=options["ticket"],
            idempotency_key=options["idempotency_key"],
        )
        if not created:
            self.stdout.write(f"Already requested with this idempotency key: #{request.pk}.")
        return request

    def _decide(self, actor: User, approve, reject, options) -> PromotionRequest:
        request = services.request_for_user(actor, approve if approve is not None else reject)
        if approve is not None:
            return services.promotion_approve(
                actor=actor, request=request, comment=options["comment"], plan_hash=options["plan_hash"]
            )
        return services.promotion_reject(actor=actor, request=request, comment=options["comment"])

    def _pipeline(self, actor: User, reference: str) -> Pipeline:
        try:
            return pipeline_by_reference(actor, reference)
        except DomainError as exc:
            raise CommandError(f"--pipeline: {exc.message.removeprefix('pipeline: ')}") from exc

    @staticmethod
    def _environment(organization_id: int, slug: str, flag: str) -> Environment:
        environment = Environment.objects.filter(organization_id=organization_id, slug=slug).first()
        if environment is None:
            raise CommandError(f"{flag}: no environment '{slug}' in the pipeline's organization.")
        return environment

    def _print(self, request: PromotionRequest) -> None:
        request = PromotionRequest.objects.select_related("pipeline", "version", "source", "target").get(pk=request.pk)
        self.stdout.write(
            self.style.SUCCESS(
                f"Promotion request #{request.pk}: {request.pipeline.slug} v{request.version.number} "
                f"{request.source.slug} → {request.target.slug} ({request.state})"
            )
        )
        self.stdout.write(f"  plan {request.plan_hash}")
        for status in services.rule_status(request):
            met = "met" if status["met"] else "not met"
            by = f" by {', '.join(status['approved_by'])}" if status["approved_by"] else ""
            self.stdout.write(
                f"  rule '{status['rule']}': {status['approvals']}/{status['required_approvals']} approvals{by} ({met})"
            )
        for gate in (request.plan or {}).get("gates", []):
            self.stdout.write(f"  gate {gate['gate']} ({gate['rule']}): {'passed' if gate['passed'] else 'failed'}")
