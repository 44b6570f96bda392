"""`python manage.py import_config <organization> FILE [--apply --user NAME]`.

Without --apply: a dry run that validates everything and prints what would change. With --apply:
the same changes, in one transaction, recorded in history as done by --user."""

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError

from apps.core.bounded_yaml import MAX_YAML_BYTES
from apps.core.commands import DomainCommand
from apps.core.errors import DomainError
from apps.resolution.config_io import import_configuration, load_yaml
from apps.tenancy.models import Organization


class Command(DomainCommand):
    help = "Import configuration from YAML (dry run unless --apply)."

    def add_arguments(self, parser):
        parser.add_argument("organization", help="Organization slug.")
        parser.add_argument("file", help="YAML file produced by export_config ('-' for standard input).")
        parser.add_argument("--apply", action="store_true", help="Write the changes (default: dry run).")
        parser.add_argument("--user", required=True, help="Username the changes are made as (permissions, history).")

    def handle(self, *args, organization, file, apply=False, user=None, **options):
        actor = get_user_model().objects.filter(username=user, is_active=True).first()
        if actor is None:
            raise CommandError(f"No active user '{user}'.")
        # One that the user may not see is answered like one that does not exist.
        org = Organization.objects.restrict(actor).filter(slug=organization).first()
        if org is None:
            raise CommandError(f"No organization '{organization}'.")
        try:
            if file == "-":
                import sys

                text = sys.stdin.read(MAX_YAML_BYTES + 1)
            else:
                with open(file, encoding="utf-8") as handle:
                    text = handle.read(MAX_YAML_BYTES + 1)  # load_yaml refuses what is past the cap
        except OSError as exc:
            raise CommandError(f"Cannot read {file}: {exc.strerror}.") from exc
        except UnicodeDecodeError as exc:
            raise CommandError(f"Cannot read {file}: not UTF-8 text.") from exc
        try:
            report = import_configuration(org, load_yaml(text), actor=actor, apply=apply)
        except DomainError as exc:
            raise CommandError(f"Nothing was changed. {exc.message}") from exc
        for line in report.changes:
            self.stdout.write(line)
        summary = f"{len(report.changes)} change(s), {report.unchanged} unchanged"
        if report.applied:
            self.stdout.write(self.style.SUCCESS(f"Applied: {summary}."))
        else:
            self.stdout.write(f"Dry run: {summary}. Run again with --apply to write them.")
