"""`python manage.py rotate_encryption_keys`: re-encrypt stored secrets under the newest key."""

from django.core.management.base import CommandError

from apps.core.commands import DomainCommand
from apps.core.crypto import UndecryptableValue
from apps.secrets.services import rotate_encryption_keys


class Command(DomainCommand):
    help = (
        "Re-encrypt every stored secret value (secrets, notification channel secrets) under the first key of "
        "FIELD_ENCRYPTION_KEYS. Prepend the new key, run this, then drop the old key."
    )

    def handle(self, *args, **options):
        try:
            counts = rotate_encryption_keys()
        except UndecryptableValue as exc:
            raise CommandError(f"Nothing was changed: {exc}. Add the old key to FIELD_ENCRYPTION_KEYS.") from exc
        self.stdout.write(
            self.style.SUCCESS(
                f"Re-encrypted {counts['secrets']} secret(s) and {counts['channels']} channel secret(s)."
            )
        )
