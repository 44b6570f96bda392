"""The one query of every API-key request: the key, its owner, its organization and the owner's role
there, by the key's prefix.

The statement is written once per database connection alias and kept. Built through the ORM it
cost ~1.5 ms of Python per request (filter, annotate, compile), about four fifths of an
authenticated trivial request, while the query itself takes ~0.1 ms. Rows become model instances
through `Model.from_db` after each column's database converters, exactly as a queryset would."""

from django.contrib.auth import get_user_model
from django.db import connections, router

from .models import ApiKey, Membership, Organization

_STATEMENTS: dict[str, tuple[str, list]] = {}  # alias -> (SQL, [(model, attnames, converters)])


def _model_columns(model, table_alias: str, connection):
    fields = model._meta.concrete_fields
    quote = connection.ops.quote_name
    columns = [f"{table_alias}.{quote(f.column)}" for f in fields]
    converters = []
    for f in fields:
        col = f.get_col(model._meta.db_table)
        converters.append((connection.ops.get_db_converters(col) + f.get_db_converters(connection), col))
    return columns, (model, [f.attname for f in fields], converters)


def _statement(alias: str) -> tuple[str, list]:
    if alias not in _STATEMENTS:
        connection = connections[alias]
        quote = connection.ops.quote_name
        user_model = get_user_model()
        parts = [
            _model_columns(ApiKey, "k", connection),
            _model_columns(user_model, "u", connection),
            _model_columns(Organization, "o", connection),
        ]

        def column(model, name):
            return quote(model._meta.get_field(name).column)

        # Only quoted identifiers from the models' metadata are interpolated; the prefix is a parameter.
        key_org, key_owner = f"k.{column(ApiKey, 'organization')}", f"k.{column(ApiKey, 'owner')}"
        member_of = (
            f"m.{column(Membership, 'organization')} = {key_org} AND m.{column(Membership, 'user')} = {key_owner}"
        )
        role = f"(SELECT m.{column(Membership, 'role')} FROM {quote(Membership._meta.db_table)} m WHERE {member_of})"  # noqa: S608 (identifiers only)
        columns = ", ".join(column for part_columns, _layout in parts for column in part_columns)
        user_table, user_pk = quote(user_model._meta.db_table), quote(str(user_model._meta.pk.column))
        org_table, org_pk = quote(Organization._meta.db_table), quote(str(Organization._meta.pk.column))
        sql = " ".join(
            [
                f"SELECT {columns}, {role} FROM {quote(ApiKey._meta.db_table)} k",  # noqa: S608 (identifiers only)
                f"INNER JOIN {user_table} u ON u.{user_pk} = {key_owner}",
                f"INNER JOIN {org_table} o ON o.{org_pk} = {key_org}",
                f"WHERE k.{column(ApiKey, 'prefix')} = %s",
            ]
        )
        _STATEMENTS[alias] = (sql, [layout for _columns, layout in parts])
    return _STATEMENTS[alias]


def _instance(alias: str, connection, layout, values):
    model, attnames, converters = layout
    converted = []
    for value, (functions, col) in zip(values, converters, strict=True):
        for convert in functions:
            value = convert(value, col, connection)
        converted.append(value)
    return model.from_db(alias, attnames, converted)


def key_with_owner(prefix: str) -> tuple[ApiKey, str | None] | None:
    """The key with this prefix (its `owner` and `organization` loaded) and the owner's role in the
    key's organization (None when no longer a member), or None when no key has the prefix."""
    alias = router.db_for_read(ApiKey)
    connection = connections[alias]
    sql, layouts = _statement(alias)
    with connection.cursor() as cursor:
        cursor.execute(sql, [prefix])
        row = cursor.fetchone()
    if row is None:
        return None
    instances, start = [], 0
    for layout in layouts:
        width = len(layout[1])
        instances.append(_instance(alias, connection, layout, row[start : start + width]))
        start += width
    key, owner, organization = instances
    key.owner = owner
    key.organization = organization
    return key, row[start]
