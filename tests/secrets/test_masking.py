"""The masking boundary: every encoding of a materialized value, log records, external reports."""

import base64
import json
import logging
from urllib.parse import quote, quote_plus

from apps.secrets import masking
from apps.secrets.masking import SecretMasker

VALUE = 'p@ss "wörd"/+?&='


def test_every_common_encoding_is_masked():
    masker = SecretMasker()
    masker.add(VALUE, "db_pw")
    raw = VALUE.encode()
    forms = [
        VALUE,
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
        raw.hex(),
        raw.hex().upper(),
        quote(VALUE, safe=""),
        quote_plus(VALUE),
        json.dumps(VALUE)[1:-1],
    ]
    for form in forms:
        assert masker.mask_text(f"before {form} after") == "before «secret:db_pw» after", form
    nested = masker.mask({"rows": [[1, VALUE]], VALUE: (forms[1],), "n": 7, "ok": True})
    assert nested == {"rows": [[1, "«secret:db_pw»"]], "«secret:db_pw»": ["«secret:db_pw»"], "n": 7, "ok": True}


def test_numeric_secret_read_back_as_a_number_is_masked():
    masker = SecretMasker()
    masker.add("424242", "pin")
    assert masker.mask([424242, 5]) == ["«secret:pin»", 5]


def test_values_are_recorded_only_into_open_maskers():
    masking.record("early", "never-seen")
    with SecretMasker() as outer, SecretMasker() as inner:
        masking.record("pw", "topsecret-1")
    masking.record("late", "after-close")
    assert inner.mask_text("topsecret-1 never-seen after-close") == "«secret:pw» never-seen after-close"
    assert outer.mask_text("topsecret-1") == "«secret:pw»"


def test_log_records_created_while_a_masker_is_open_are_masked(caplog):
    caplog.set_level(logging.INFO)
    logger = logging.getLogger("planasonix.test.masking")
    with SecretMasker():
        masking.record("pw", "topsecret-2")
        logger.info("driver said %s", "password topsecret-2 rejected")
        try:
            raise RuntimeError("login failed for topsecret-2")
        except RuntimeError:
            logger.exception("connect failed")
    logger.info("outside: %s", "topsecret-2")
    messages = [r.getMessage() for r in caplog.records]
    assert "driver said password «secret:pw» rejected" in messages
    assert "outside: topsecret-2" in messages  # no masker open: nothing was materialized here
    formatted = logging.Formatter().format(next(r for r in caplog.records if r.getMessage() == "connect failed"))
    assert "login failed for «secret:pw»" in formatted and "topsecret-2" not in formatted
