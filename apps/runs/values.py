"""How the built-in executor sees values: the canonical form of a value (the same for the same value
whatever database produced it, so the hash total and the column profiles agree across databases), a
row's order-independent digest, the class of a value, the narrowest destination column class that
stores a column's values unchanged and its SQL type, and the value sqlite3 binds."""

import datetime
import decimal
import hashlib
import json


def canonical_value(value):
    """The same text for the same value whatever database produced it."""
    if value is None:
        return None
    if isinstance(value, bool):
        return int(value)  # SQLite has no boolean: PostgreSQL's true must hash like SQLite's 1
    if isinstance(value, int):
        return value
    if isinstance(value, float | decimal.Decimal):
        number = decimal.Decimal(str(value)) if isinstance(value, float) else value
        if not number.is_finite():
            return str(number)  # NaN and ±Infinity have no integral form
        if number == number.to_integral_value():
            return int(number)
        return format(number.normalize(), "f")
    if isinstance(value, datetime.datetime) and value.utcoffset() is not None:
        # The same instant reads back in the session's time zone on PostgreSQL: hash it in UTC.
        return value.astimezone(datetime.UTC).isoformat()
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, bytes | memoryview):
        return bytes(value).hex()
    return str(value)


def row_digest(columns: list[str], row) -> int:
    """64-bit digest of one row, independent of column order."""
    canonical = json.dumps(
        {name: canonical_value(value) for name, value in zip(columns, row, strict=True)},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return int.from_bytes(hashlib.sha256(canonical.encode()).digest()[:8], "big")


def value_class(value) -> str | None:
    """The class of a value as a destination column would store it (None for NULL)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float | decimal.Decimal):
        return "number"
    if isinstance(value, datetime.datetime):
        return "timestamptz" if value.utcoffset() is not None else "timestamp"
    if isinstance(value, datetime.date):
        return "date"
    if isinstance(value, bytes | memoryview):
        return "bytes"
    return "text"


# Which value classes a column of a class stores unchanged (anything else is altered by the
# destination: an integer column rounds 2.5, a text column turns 5 into '5').
STORES = {
    "boolean": {"boolean"},
    "integer": {"integer"},
    "number": {"integer", "number"},
    "date": {"date"},
    "timestamp": {"timestamp"},
    "timestamptz": {"timestamptz"},
    "bytes": {"bytes"},
    "text": {"text"},
}
TYPES = {
    # class: (postgres, sqlite); SQLite keeps dates and times as canonical ISO text (sqlite_value)
    "boolean": ("BOOLEAN", "INTEGER"),
    "integer": ("BIGINT", "INTEGER"),
    "number": ("NUMERIC", "REAL"),
    "date": ("DATE", "TEXT"),
    "timestamp": ("TIMESTAMP", "TEXT"),
    "timestamptz": ("TIMESTAMPTZ", "TEXT"),
    "bytes": ("BYTEA", "BLOB"),
    "text": ("TEXT", "TEXT"),
}


def column_class(values) -> str:
    """The narrowest column class that stores every given (non-NULL) value unchanged."""
    classes = {value_class(v) for v in values} - {None}
    for candidate, stores in STORES.items():
        if classes and classes <= stores:
            return candidate
    return "text"


def column_type(kind: str, column_class: str) -> str:
    """The destination's SQL type for a column class."""
    postgres, sqlite = TYPES[column_class]
    return postgres if kind == "postgres" else sqlite


def sqlite_value(value):
    """A value sqlite3 can bind and that reads back with the same canonical value. Decimals become
    floats (SQLite has no decimal type: beyond 15 significant digits they lose precision)."""
    if value is None or isinstance(value, int | float | str | bytes):
        return value
    if isinstance(value, decimal.Decimal):
        if value.is_finite() and value == value.to_integral_value():
            return int(value)
        return float(value)
    if isinstance(value, memoryview):
        return bytes(value)
    return canonical_value(value)
