"""Helpers to drive admin change forms (main form plus inline formsets) from a test client."""

from django.test import Client


def login(user) -> Client:
    if not user.is_staff:
        user.is_staff = True
        user.save()
    client = Client()
    client.force_login(user)
    return client


def _field_value(bound):
    value = bound.value()
    widget = bound.field.widget
    if getattr(widget, "input_type", None) == "checkbox" and not getattr(widget, "allow_multiple_selected", False):
        return "on" if value else None
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return str(value)


def form_data(response, inline_prefix=None) -> dict:
    """The POST body that would save the page unchanged (main form and every inline formset)."""
    data = {}

    def add_form(form):
        for name, field in form.fields.items():
            if field.disabled:
                continue
            value = _field_value(form[name])
            if value is not None:
                data[form.add_prefix(name)] = value

    add_form(response.context["adminform"].form)
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        add_form(formset.management_form)
        for form in formset.initial_forms:
            add_form(form)
        data[formset.management_form.add_prefix("TOTAL_FORMS")] = str(len(formset.initial_forms))
    return data


def inline_prefix(response) -> str:
    (inline,) = response.context["inline_admin_formsets"]
    return inline.formset.prefix


def add_row(data, prefix, **values) -> None:
    """Append a new row to the inline formset `prefix`."""
    index = int(data[f"{prefix}-TOTAL_FORMS"])
    for name, value in values.items():
        data[f"{prefix}-{index}-{name}"] = value
    data[f"{prefix}-TOTAL_FORMS"] = str(index + 1)


def errors_of(response) -> str:
    assert response.status_code == 200, response.status_code
    text = []
    adminform = response.context["adminform"]
    text += [str(e) for errors in adminform.form.errors.values() for e in errors]
    for inline in response.context.get("inline_admin_formsets", []):
        for form in inline.formset.forms:
            text += [str(e) for errors in form.errors.values() for e in errors]
        text += [str(e) for e in inline.formset.non_form_errors()]
    assert text, "expected form errors"
    return " ".join(text)
