"""Shared model pieces."""

import hashlib
import json
import zlib
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import models


def without_blobs(queryset: models.QuerySet, *, keep: tuple[str, ...] = ()) -> models.QuerySet:
    """The queryset minus the heavy columns (`HEAVY_FIELDS`: resolved answers, metrics, logs, graphs)
    of its model and of every model it selects related, for lists, changelists and list pages;
    details load the row whole. `keep` names columns a list does show (e.g. a run's metrics)."""
    deferred = [name for name in _heavy_paths(queryset.model, queryset.query.select_related, "") if name not in keep]
    return queryset.defer(*deferred) if deferred else queryset


def _heavy_paths(model, related, prefix: str) -> list[str]:
    paths = [f"{prefix}{name}" for name in getattr(model, "HEAVY_FIELDS", ())]
    for name, nested in related.items() if isinstance(related, dict) else ():
        field = model._meta.get_field(name)
        paths += _heavy_paths(field.related_model, nested, f"{prefix}{name}__")
    return paths


def optional_reference(to, *, on_delete=models.SET_NULL, related_name="+", blank=True, **options) -> models.ForeignKey:
    """A foreign key that may be empty (null; `blank`: forms may leave it empty), emptied when its row
    goes and without a reverse accessor unless told otherwise."""
    return models.ForeignKey(to, null=True, blank=blank, on_delete=on_delete, related_name=related_name, **options)


def user_reference(**options) -> models.ForeignKey:
    """Who asked, deployed, created or owns a row: kept (emptied) when the user is deleted."""
    return optional_reference(settings.AUTH_USER_MODEL, **options)


def json_list(**options) -> models.JSONField:
    """A JSON list that may be left empty (kinds, event names, patterns, networks)."""
    return models.JSONField(default=list, blank=True, **options)


class TimeStampedModel(models.Model):
    """Adds created/updated timestamps."""

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class WorkerHeartbeat(models.Model):
    """Last time a Celery worker ran the beat-scheduled heartbeat task (read by /healthz)."""

    name = models.CharField(max_length=200, unique=True)
    seen_at = models.DateTimeField()

    def __str__(self):
        return f"{self.name} @ {self.seen_at:%Y-%m-%d %H:%M:%S}"


class FrozenDocument(models.Model):
    """An immutable JSON document stored once under the SHA-256 of its canonical form, zlib-compressed:
    frozen plans and the configuration a deployment ran with. The rows that use one (and their
    history rows) carry only its digest, so lists and audit tables never move the blob."""

    digest = models.CharField(max_length=64, primary_key=True)
    body = models.BinaryField()
    size = models.PositiveIntegerField(help_text="Bytes of the uncompressed JSON.")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return f"{self.digest[:12]}… ({self.size} bytes)"

    @classmethod
    def store(cls, document) -> str:
        """Store `document` (once: an existing digest is left alone) and return its digest."""
        raw = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        digest = hashlib.sha256(raw).hexdigest()
        row = FrozenDocument(digest=digest, body=zlib.compress(raw, 6), size=len(raw))
        FrozenDocument.objects.bulk_create([row], ignore_conflicts=True)
        return digest

    @classmethod
    def load(cls, digest: str | None, default=None):
        """The document stored under `digest` (`default` when there is none)."""
        if not digest:
            return default
        body = cls.objects.values_list("body", flat=True).get(digest=digest)
        return json.loads(zlib.decompress(bytes(body)))

    def decoded(self):
        """This row's document."""
        return json.loads(zlib.decompress(bytes(self.body)))


def frozen_document_reference() -> models.ForeignKey:
    """The key of a row's FrozenDocument (set by the save of a FrozenDocumentAttribute, never by a form)."""
    return optional_reference(FrozenDocument, on_delete=models.PROTECT, editable=False)


class FrozenDocumentAttribute:
    """A model attribute holding a JSON document in FrozenDocument through the foreign key `field`:
    read on first use (then kept on the instance until the key changes), written by the model's save
    (FrozenDocumentsMixin). Assigning None clears the key."""

    def __init__(self, field: str, default=dict):
        self.field, self.default = field, default

    def __set_name__(self, owner, name):
        self.name = name
        owner._frozen_documents = (*getattr(owner, "_frozen_documents", ()), name)

    def _attname(self, instance) -> str:
        return instance._meta.get_field(self.field).attname

    def __get__(self, instance, owner=None):
        if instance is None:
            return self
        digest = getattr(instance, self._attname(instance))
        cached = instance.__dict__.get(f"_doc_{self.name}")
        if cached is not None and (cached[0] == digest or cached[0] is _PENDING):
            return cached[1]
        field = instance._meta.get_field(self.field)
        if digest and field.is_cached(instance):  # selected with the row (select_related): no query
            value = field.get_cached_value(instance).decoded()
        else:
            value = FrozenDocument.load(digest, None)
        value = self.default() if value is None else value
        instance.__dict__[f"_doc_{self.name}"] = (digest, value)
        return value

    def __set__(self, instance, value):
        if value is None:
            setattr(instance, self._attname(instance), None)
            instance.__dict__[f"_doc_{self.name}"] = (None, self.default())
            return
        instance.__dict__[f"_doc_{self.name}"] = (_PENDING, value)

    def adopt(self, instance, digest: str, value=None) -> None:
        """Point `instance` at the document stored under `digest` (the caller stored it: nothing is
        written, hashed or compressed again); `value`, its content, when the caller has it."""
        setattr(instance, self._attname(instance), digest)
        if value is None:
            instance.__dict__.pop(f"_doc_{self.name}", None)  # read on first use
        else:
            instance.__dict__[f"_doc_{self.name}"] = (digest, value)

    def share(self, source, target) -> None:
        """Give `target` the value `source` has read, when both point at the same document."""
        cached = source.__dict__.get(f"_doc_{self.name}")
        if cached is not None and cached[0] is not _PENDING and cached[0] == getattr(target, self._attname(target)):
            target.__dict__[f"_doc_{self.name}"] = cached

    def flush(self, instance) -> None:
        """Store an assigned value and point the foreign key at it (called before the row is saved)."""
        cached = instance.__dict__.get(f"_doc_{self.name}")
        if cached is not None and cached[0] is _PENDING:
            digest = FrozenDocument.store(cached[1])
            setattr(instance, self._attname(instance), digest)
            instance.__dict__[f"_doc_{self.name}"] = (digest, cached[1])


_PENDING = object()


if TYPE_CHECKING:
    _ModelBase = models.Model
else:
    _ModelBase = object


class FrozenDocumentsMixin(_ModelBase):
    """Saves the model's FrozenDocumentAttribute values before the row itself."""

    def save(self, *args, **kwargs):
        for name in getattr(type(self), "_frozen_documents", ()):
            _attribute(type(self), name).flush(self)
        super().save(*args, **kwargs)


def _attribute(model, name) -> FrozenDocumentAttribute:
    for klass in model.__mro__:
        if name in klass.__dict__:
            return klass.__dict__[name]
    raise AttributeError(name)
