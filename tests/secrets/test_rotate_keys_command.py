"""`rotate_encryption_keys`: prepend a key, re-encrypt, drop the old key; a missing key changes nothing."""

import pytest
from django.core.management import CommandError, call_command

from apps.core import crypto
from apps.secrets.models import Secret

pytestmark = pytest.mark.django_db


def _stored():
    return {s.pk: (s.ciphertext, s.fingerprint, s.updated_at, s.history.count()) for s in Secret.objects.all()}


def test_rotation_then_dropping_the_old_key(make_secret, settings, new_key, capsys):
    old_keys = list(settings.FIELD_ENCRYPTION_KEYS)
    first = make_secret(name="first_secret", value="value-one")
    second = make_secret(name="second_secret", value="value-two")
    before = _stored()
    settings.FIELD_ENCRYPTION_KEYS = [new_key, *old_keys]
    call_command("rotate_encryption_keys")
    assert "Re-encrypted 2 secret(s)" in capsys.readouterr().out
    after = _stored()
    for pk, (ciphertext, fingerprint, updated_at, history_rows) in before.items():
        assert after[pk][0] != ciphertext  # re-encrypted
        assert after[pk][1:] == (fingerprint, updated_at, history_rows)  # value, ETag and history unchanged
    settings.FIELD_ENCRYPTION_KEYS = [new_key]
    assert crypto.decrypt(Secret.objects.get(pk=first.pk).ciphertext) == "value-one"
    assert crypto.decrypt(Secret.objects.get(pk=second.pk).ciphertext) == "value-two"


def test_a_missing_key_fails_and_changes_nothing(make_secret, settings, new_key):
    make_secret(name="old_one", value="value-one")
    settings.FIELD_ENCRYPTION_KEYS = [new_key, *settings.FIELD_ENCRYPTION_KEYS]
    make_secret(name="new_one", value="value-two")  # encrypted under new_key
    before = _stored()
    settings.FIELD_ENCRYPTION_KEYS = [new_key]  # the key of old_one is gone
    with pytest.raises(CommandError) as exc:
        call_command("rotate_encryption_keys")
    assert exc.value.returncode == 1  # manage.py prints the message on stderr and exits 1
    assert "Nothing was changed" in str(exc.value) and "FIELD_ENCRYPTION_KEYS" in str(exc.value)
    assert _stored() == before
