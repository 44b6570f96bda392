"""`python manage.py seed_demo`: load the demo data (idempotent) and print the logins."""

from django.conf import settings

from apps.core.commands import DomainCommand
from apps.demo.services import DEMO_USERS, seed_demo


class Command(DomainCommand):
    help = "Create the demo organization (Acme Data), its stages, users and grants. Safe to run again."

    def handle(self, *args, **options):
        result = seed_demo()
        stages = " → ".join(e.name for e in sorted(result["stages"].values(), key=lambda e: e.position))
        self.stdout.write(self.style.SUCCESS(f"Demo organization '{result['organization'].name}': {stages}"))
        self.stdout.write(
            f"Sign in at {settings.SITE_URL}/ (approval screens, everyone), {settings.SITE_URL}/admin/ "
            f"(administrators) or {settings.SITE_URL}/api-auth/login/?next=/api/v1/ (browsable API) with:"
        )
        for spec in DEMO_USERS:
            self.stdout.write(f"  {spec.username:<10} {spec.password:<15} {spec.description}")
