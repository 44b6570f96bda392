"""Form fields shared by the admin and the screens."""

from django import forms
from django.core.exceptions import ValidationError

from .parsers import StrictJSONError, loads_strict


def json_from_text(text: str):
    """The value of a JSON text typed into a form, read with the API's strict rules (no NaN or
    Infinity, no duplicate keys, bounded nesting); Django's ValidationError saying why otherwise."""
    try:
        return loads_strict(text)
    except StrictJSONError as exc:
        raise ValidationError(str(exc), code="invalid") from None


class StrictJSONField(forms.JSONField):
    """forms.JSONField read through `json_from_text`: Django's own accepts NaN and 1e999 (which the
    database then refuses with a 500) and recurses without bound."""

    def to_python(self, value):
        if self.disabled or value in self.empty_values:
            return super().to_python(value)
        if isinstance(value, list | dict | int | float | forms.fields.JSONString):
            return value
        converted = json_from_text(value)
        return forms.fields.JSONString(converted) if isinstance(converted, str) else converted

    def bound_data(self, data, initial):
        if self.disabled:
            return initial
        if data is None:
            return None
        try:
            return json_from_text(data)
        except ValidationError:
            return forms.fields.InvalidJSONInput(data)


class BoundedModelMultipleChoiceField(forms.ModelMultipleChoiceField):
    """ModelMultipleChoiceField whose integer ids must fit the database's integer range: SQLite
    raises OverflowError (a 500) on a larger one, where an unknown id should be a form error."""

    def _check_values(self, value):
        from .params import DB_INT_MAX, DB_INT_MIN

        key = self.to_field_name or "pk"
        model = self.queryset.model  # type: ignore[union-attr]  # _check_values runs only with a queryset
        field = model._meta.pk if key == "pk" else model._meta.get_field(key)
        if field.get_internal_type() in ("AutoField", "BigAutoField", "IntegerField", "BigIntegerField"):
            for pk in value or ():
                text = str(pk)
                if text.lstrip("-").isdigit() and not DB_INT_MIN <= int(text) <= DB_INT_MAX:
                    raise ValidationError(
                        self.error_messages["invalid_choice"], code="invalid_choice", params={"value": text}
                    )
        return super()._check_values(value)  # type: ignore[misc]  # Django's private hook, not in the stubs
