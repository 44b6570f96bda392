"""`python manage.py export_config <organization> [--output FILE]`: configuration as YAML."""

from django.core.management.base import CommandError

from apps.core.commands import DomainCommand
from apps.resolution.config_io import dump_yaml, export_configuration
from apps.tenancy.models import Organization


class Command(DomainCommand):
    help = "Export an organization's configuration layer (no secret values) as YAML."

    def add_arguments(self, parser):
        parser.add_argument("organization", help="Organization slug.")
        parser.add_argument("--output", "-o", help="Write to this file instead of standard output.")

    def handle(self, *args, organization, output=None, **options):
        org = Organization.objects.filter(slug=organization).first()
        if org is None:
            raise CommandError(f"No organization '{organization}'.")
        text = dump_yaml(export_configuration(org))
        if output:
            try:
                with open(output, "w", encoding="utf-8") as handle:
                    handle.write(text)
            except OSError as exc:
                raise CommandError(f"Cannot write {output}: {exc.strerror}.") from exc
            self.stderr.write(f"Wrote {output}")
        else:
            self.stdout.write(text, ending="")
