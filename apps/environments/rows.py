"""Writing a row that exists once per (parent, environment), such as a variable's override or a
connection role's binding: set it (locked while it is compared; an unchanged row is left alone, with
no history row and no new configuration revision) and delete it (the permission door, locks
included), each recorded in the history and bumping the organization's configuration revision.
The owning app validates the values first; apps/environments/admin_rows.py is the admin side."""

from apps.core.services import audited_delete, audited_save
from apps.tenancy import revisions

from . import permissions as perms


def _unchanged(row, values: dict) -> bool:
    for name, value in values.items():
        field = row._meta.get_field(name)
        if field.is_relation:
            if getattr(row, field.attname) != (value.pk if value is not None else None):
                return False
        elif getattr(row, name) != value:
            return False
    return True


def per_environment_row_set(
    model, *, parent_field: str, parent, environment, values: dict, actor, reason: str, organization_id: int
):
    """Create or replace the `model` row of `parent` (through `parent_field`) in `environment` with
    `values` (field -> value; a foreign key as an object or None) and return it."""
    row = (
        model._default_manager.select_for_update().filter(**{parent_field: parent, "environment": environment}).first()
    )
    if row is None:
        row = model(**{parent_field: parent, "environment": environment})
    elif _unchanged(row, values):
        return row
    for name, value in values.items():
        setattr(row, name, value)
    audited_save(row, actor=actor, reason=reason, clean=False)
    revisions.bump(organization_id)
    return row


def per_environment_row_delete(row, *, actor, reason: str, organization_id: int) -> None:
    """Delete a per-environment row if `actor` may edit its environment's configuration now."""
    perms.require_config_edit(actor, row.environment)
    audited_delete(row, actor=actor, reason=reason)
    revisions.bump(organization_id)
