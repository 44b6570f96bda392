"""The one boundary where data leaves the executor: secret values, and their common encodings,
masked in everything a run, a preview or a connection test records or returns.

An executor opens a `SecretMasker` (`with SecretMasker() as masker:`) before it resolves;
`apps.secrets.services.materialize` (the only function that produces a plaintext value) records
every value into the maskers open in this context, so a value is collected where it is
materialized, whatever the call path. The executor then passes what it records or returns
(rows, metrics, log, error text, event payloads) through `masker.mask(...)`, once, at the place
that records it. While a masker is open, log records created in the same context are masked too
(see `install_log_masking`), as CI runners mask secrets in job logs."""

import base64
import binascii
import json
import logging
import re
from contextvars import ContextVar
from urllib.parse import quote, quote_plus

_open: ContextVar[tuple["SecretMasker", ...]] = ContextVar("open_secret_maskers", default=())


def encodings(value: str) -> set[str]:
    """The forms a value commonly takes on its way out: as is, base64 (standard and URL-safe,
    with and without padding), hex (both cases), URL-encoded and JSON-escaped."""
    raw = value.encode()
    forms = {value}
    for encoded in (base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()):
        forms |= {encoded, encoded.rstrip("=")}
    hexed = binascii.hexlify(raw).decode()
    forms |= {hexed, hexed.upper(), quote(value, safe=""), quote_plus(value, safe=""), quote(value)}
    forms |= {json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}
    return {form for form in forms if form}


class SecretMasker:
    """The secret values one execution materialized; `mask` replaces them (and their encodings)
    with `«secret:<name>»` in strings, numbers and JSON containers."""

    def __init__(self):
        self._labels: dict[str, str] = {}  # an encoded form -> its replacement
        self._pattern: re.Pattern | None = None
        self._token = None

    def __enter__(self) -> "SecretMasker":
        self._token = _open.set((*_open.get(), self))
        return self

    def __exit__(self, *exc) -> None:
        _open.reset(self._token)

    def __bool__(self) -> bool:
        return bool(self._labels)

    def add(self, value, name: str) -> None:
        if not isinstance(value, str) or not value:
            return
        label = f"«secret:{name}»"
        for form in encodings(value):
            self._labels.setdefault(form, label)
        # Longest first: a value's base64 must be replaced whole, not a shorter form inside it.
        needles = sorted(self._labels, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(n) for n in needles))

    def mask_text(self, text: str) -> str:
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(lambda m: self._labels[m.group(0)], text)

    def mask(self, value):
        """A copy of `value` with every secret form masked (dict keys too; tuples become lists)."""
        if self._pattern is None:
            return value
        if isinstance(value, str):
            return self.mask_text(value)
        if isinstance(value, bool) or value is None:
            return value
        if isinstance(value, dict):
            return {self.mask(k): self.mask(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.mask(v) for v in value]
        text = str(value)
        if text in self._labels:  # a numeric secret read back as a number
            return self._labels[text]
        return value


def record(name: str, value: str) -> None:
    """A secret was materialized: every masker open in this context will mask it."""
    for masker in _open.get():
        masker.add(value, name)


def _mask_record(record: logging.LogRecord) -> None:
    maskers = [m for m in _open.get() if m]
    if not maskers:
        return
    try:
        message = record.getMessage()
    except (TypeError, ValueError):  # a malformed call: logging reports it itself when formatting
        return
    if record.exc_info and not record.exc_text:  # formatters use exc_text when it is set
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    for masker in maskers:
        message = masker.mask_text(message)
        record.exc_text = masker.mask_text(record.exc_text) if record.exc_text else record.exc_text
    record.msg, record.args = message, None


def install_log_masking() -> None:
    """Mask log records created while a masker is open, whatever handler later receives them:
    done in the record factory because handler filters miss handlers added later (and loggers'
    filters do not apply to their children)."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "masks_secrets", False):
        return

    def factory(*args, **kwargs):
        record = previous(*args, **kwargs)
        _mask_record(record)
        return record

    factory.masks_secrets = True  # type: ignore[attr-defined]  # the marker read above
    logging.setLogRecordFactory(factory)
