"""Writing a row that exists once per (parent, environment), such as a variable's override or a
connection role's binding: set it (locked while it is compared; an unchanged row is left alone, with
no history row and no new configuration revision) and delete it (the permission door, locks
included), each recorded in the history and bumping the organization's configuration revision.
The owning app validates the values first and declares its rows once (`PerEnvironmentRows`);
apps/environments/admin_rows.py is the admin side."""

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


class PerEnvironmentRows:
    """The rows of `model` that exist once per (parent, environment), the parent through
    `parent_field` (it has a name and an organization): set and delete them, the history saying
    "<parent name> <verb> in <environment slug>"."""

    def __init__(self, model, parent_field: str, *, set_verb: str, delete_verb: str):
        self.model, self.parent_field = model, parent_field
        self.set_verb, self.delete_verb = set_verb, delete_verb

    def set(self, parent, environment, values: dict, *, actor):
        """Create or replace the row of `parent` in `environment` with `values` (field -> value; a
        foreign key as an object or None) and return it."""
        where = {self.parent_field: parent, "environment": environment}
        row = self.model._default_manager.select_for_update().filter(**where).first()
        if row is None:
            row = self.model(**where)
        elif _unchanged(row, values):
            return row
        for name, value in values.items():
            setattr(row, name, value)
        audited_save(row, actor=actor, reason=f"{parent.name} {self.set_verb} in {environment.slug}", clean=False)
        revisions.bump(parent.organization_id)
        return row

    def delete(self, row, *, actor) -> None:
        """Delete a row if `actor` may edit its environment's configuration now."""
        parent = getattr(row, self.parent_field)
        reason = f"{parent.name} {self.delete_verb} in {row.environment.slug}"
        perms.require_config_edit(actor, row.environment)
        audited_delete(row, actor=actor, reason=reason)
        revisions.bump(parent.organization_id)
