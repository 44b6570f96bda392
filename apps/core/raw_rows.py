"""Model instances from one hand-written statement, for the few hot reads whose ORM compilation
costs more than the query (the API key of every request, the target of a warm resolve).

A statement's columns come from `model_columns` (quoted from the model's metadata, so nothing but
identifiers is interpolated); `instances` turns a row back into model instances after each column's
database converters, exactly as a queryset would (`Model.from_db`). Columns left out are deferred,
as with `only()`, and load on first access."""

from collections.abc import Sequence
from typing import Any

Layout = tuple  # (model, attnames, [(position, converters, column)], position of the primary key)


def model_columns(model, table_alias: str, connection, names: Sequence[str] | None = None) -> tuple[list[str], Layout]:
    """The quoted `table_alias.column` list of `model`'s concrete fields (or of the fields `names`)
    and the layout `instances` needs to rebuild the model from them."""
    fields = model._meta.concrete_fields
    if names is not None:
        fields = [model._meta.get_field(name) for name in names]
    quote = connection.ops.quote_name
    columns = [f"{table_alias}.{quote(f.column)}" for f in fields]
    converters = []  # only the columns that have converters
    for position, f in enumerate(fields):
        col = f.get_col(model._meta.db_table)
        functions = connection.ops.get_db_converters(col) + f.get_db_converters(connection)
        if functions:
            converters.append((position, functions, col))
    attnames = [f.attname for f in fields]
    return columns, (model, attnames, converters, attnames.index(model._meta.pk.attname))


def column(connection, model, name: str) -> str:
    """The quoted column of `model`'s field `name`."""
    return connection.ops.quote_name(model._meta.get_field(name).column)


def table(connection, model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def instances(alias: str, connection, layouts: Sequence[Layout], row: Sequence) -> tuple[list, int]:
    """The instances of `layouts` read from the start of `row` (None for a model whose primary key
    is NULL: an outer join that found nothing), and the position of the first column after them."""
    out: list[Any] = []
    start = 0
    for model, attnames, converters, pk_position in layouts:
        values = list(row[start : start + len(attnames)])
        start += len(attnames)
        if values[pk_position] is None:
            out.append(None)
            continue
        for position, functions, col in converters:
            value = values[position]
            for convert in functions:
                value = convert(value, col, connection)
            values[position] = value
        out.append(model.from_db(alias, attnames, values))
    return out, start
