"""Column profiles: per destination column, what the rows look like, in memory that does not grow
with the row count.

Per column: the column class (the executor's `_column_class`), null count, a distinct estimate
(HyperLogLog), min/max, sum and mean for numbers, min/max length for text, and an order-independent
hash (the sum, mod 2**64, of a 64-bit digest of each value's canonical form). Everything is computed
from the canonical values (`executor.canonical_value`), so the same rows give the same profile
whatever database they were read from or written to. Profiles are built batch by batch; two
profiles of the same column merge (`ColumnProfile.merge`: the sketches take register-wise maxima,
the rest are sums, minima and maxima).

The HyperLogLog is written here rather than taken from a library: `datasketch` needs numpy and
scipy and updates one value per call through numpy (far slower per value than the bytearray below),
and the digest must be the one of the canonical value so both databases agree.

On PostgreSQL, after a `replace` load, the destination computes the min/max, sums and text lengths
of the SQL_TYPES columns in one query (benchmarks/profiles.py, 1M rows: 1.3 s in SQL against 4.5 s
for the same aggregates in Python); the sketches, hashes and null counts stay in the stream (they
need the canonical values), as does everything on SQLite and for `append` (the table holds older
rows too). It has 2**14
registers (16 KiB per column): standard error 1.04 / sqrt(2**14) = 0.81%, with linear counting for
small cardinalities (exact-looking below a few thousand distinct values)."""

import decimal
import functools
import hashlib
import math
import operator
from collections import Counter
from collections.abc import Iterable
from typing import Any

HLL_P = 14
HLL_M = 1 << HLL_P
HLL_STANDARD_ERROR = 1.04 / math.sqrt(HLL_M)
_RANK_BITS = 64 - HLL_P
_RANK_MASK = (1 << _RANK_BITS) - 1
_ALPHA = 0.7213 / (1 + 1.079 / HLL_M)
MASK64 = (1 << 64) - 1
TEXT_SHOWN = 100  # min/max of text columns are shown up to this many characters
NUMERIC = ("integer", "number")
# Column classes whose min/max (and sum, lengths) PostgreSQL computes after a `replace` load, where
# that is faster than Python (benchmarks/profiles.py): the values it stores are the values read, so
# the answers are the ones Python would give. Not `number` (a float stored as NUMERIC keeps 15
# significant digits) nor `bytes` (no min/max for bytea).
SQL_TYPES = ("integer", "text", "date", "timestamp", "timestamptz", "boolean")
_EXACT = decimal.Context(prec=60)
# Sums and means of `number` columns are shown to 15 significant digits: floats (SQLite's REAL)
# and decimals (PostgreSQL's NUMERIC) of the same values agree there.
_SHOWN_NUMBER = decimal.Context(prec=15)


class HyperLogLog:
    """A HyperLogLog of 64-bit digests (the top HLL_P bits pick the register)."""

    __slots__ = ("registers",)

    def __init__(self, registers: bytes | None = None):
        self.registers = bytearray(registers) if registers is not None else bytearray(HLL_M)

    def add(self, digest: int) -> None:
        index = digest >> _RANK_BITS
        rank = _RANK_BITS - (digest & _RANK_MASK).bit_length() + 1
        if rank > self.registers[index]:
            self.registers[index] = rank

    def merge(self, other: "HyperLogLog") -> None:
        self.registers = bytearray(map(max, self.registers, other.registers))

    def estimate(self) -> int:
        registers = self.registers
        zeros = registers.count(0)
        if zeros == HLL_M:
            return 0
        raw = _ALPHA * HLL_M * HLL_M / math.fsum(2.0**-r for r in registers)
        if raw <= 2.5 * HLL_M and zeros:
            return round(HLL_M * math.log(HLL_M / zeros))
        return round(raw)


def digest(canonical) -> int:
    """64-bit digest of a canonical value (None, int or str)."""
    data = b"\x00" if canonical is None else str(canonical).encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


_NULL_DIGEST = digest(None)
# The digests of a batch are taken by C-level maps (no Python frame per value).
_blake8 = functools.partial(hashlib.blake2b, digest_size=8)
_take = operator.methodcaller("digest")
_as_int = functools.partial(int.from_bytes, byteorder="big")


def _digests(texts) -> list[int]:
    return list(map(_as_int, map(_take, map(_blake8, texts))))


def _encode(value: str) -> bytes:
    return value.encode("utf-8", "surrogatepass")


def _number_text(value, canonical) -> str:
    """str(canonical_value(value)), quicker for the common floats (repr is already canonical
    unless integral or in exponent form)."""
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value))
        text = repr(value)
        if "e" not in text and "n" not in text:
            return text
    return str(canonical(value))


def _number_sum(values) -> decimal.Decimal:
    """The exact sum of a batch of numbers (floats summed by math.fsum, exactly rounded)."""
    floats = [v for v in values if isinstance(v, float)]
    exact = [v for v in values if not isinstance(v, float)]
    with decimal.localcontext(_EXACT):
        total = sum(exact, decimal.Decimal())
        if floats:
            total += decimal.Decimal(repr(math.fsum(floats)))
    return total


class ColumnProfile:
    """The running profile of one column."""

    __slots__ = (
        "accepted",
        "count",
        "duplicates",
        "hash_sum",
        "in_sql",
        "max_length",
        "maximum",
        "min_length",
        "minimum",
        "name",
        "nulls",
        "sketch",
        "total",
        "type",
        "unexpected",
        "unexpected_sample",
    )

    def __init__(self, name: str, column_type: str, accepted: frozenset | None = None):
        self.name, self.type = name, column_type
        self.count = self.nulls = self.hash_sum = 0
        self.sketch = HyperLogLog()
        self.minimum: Any = None
        self.maximum: Any = None
        self.min_length: int | None = None
        self.max_length: int | None = None
        self.total: int | decimal.Decimal = 0
        # An accepted_values expectation: the canonical accepted values; values outside are counted.
        self.accepted, self.unexpected = accepted, 0
        self.unexpected_sample: list = []
        self.in_sql = False  # min/max, sum and lengths come from SQL after the load (set_from_sql)
        self.duplicates: int | None = None  # values stored more than once (a unique expectation; set after the load)

    def add_values(self, values: list, canonical) -> None:
        """Add one batch of this column's values; `canonical` is executor.canonical_value."""
        self.count += len(values)
        present = [v for v in values if v is not None]
        missing = len(values) - len(present)
        self.nulls += missing
        hash_sum = self.hash_sum + _NULL_DIGEST * missing
        if not present:
            self.hash_sum = hash_sum & MASK64
            return
        if self.type == "bytes":
            present = [bytes(v) for v in present]  # memoryviews do not order
        # Each distinct value of the batch is canonicalized and digested once (low-cardinality
        # columns cost little); the hash counts every occurrence.
        counted = Counter(present)
        distinct = list(counted)
        texts: Iterable[bytes]
        if self.type == "text":
            texts = map(_encode, distinct)
        elif self.type == "integer":
            texts = map(_encode, map(str, distinct))
        elif self.type == "number":
            texts = (_encode(_number_text(v, canonical)) for v in distinct)
        else:
            texts = (_encode(str(canonical(v))) for v in distinct)
        digests = _digests(texts)
        if len(distinct) == len(present):
            hash_sum += sum(digests)
        else:
            hash_sum += sum(map(operator.mul, digests, counted.values()))
        self.hash_sum = hash_sum & MASK64
        if self.accepted is not None:
            self._check_accepted(counted, canonical)
        registers = self.sketch.registers
        for h in digests:
            index = h >> _RANK_BITS
            rank = _RANK_BITS + 1 - (h & _RANK_MASK).bit_length()
            if rank > registers[index]:
                registers[index] = rank
        if self.in_sql:
            return
        low, high = min(distinct), max(distinct)
        if self.minimum is None or low < self.minimum:
            self.minimum = low
        if self.maximum is None or high > self.maximum:
            self.maximum = high
        if self.type == "integer":
            self.total += sum(present)
        elif self.type == "number":
            with decimal.localcontext(_EXACT):
                self.total = self.total + _number_sum(present)
        elif self.type == "text":
            lengths = list(map(len, distinct))
            low_length, high_length = min(lengths), max(lengths)
            if self.min_length is None or low_length < self.min_length:
                self.min_length = low_length
            if self.max_length is None or high_length > self.max_length:
                self.max_length = high_length

    def set_from_sql(self, minimum, maximum, total=None, min_length=None, max_length=None) -> None:
        """The aggregates a SQL query over the loaded destination table answered (see SQL_TYPES)."""
        self.minimum, self.maximum, self.min_length, self.max_length = minimum, maximum, min_length, max_length
        if self.type == "integer":
            self.total = int(total or 0)

    def _check_accepted(self, counted: Counter, canonical) -> None:
        plain = self.type in ("integer", "text")
        accepted = self.accepted or frozenset()
        for value, times in counted.items():
            shown = value if plain else canonical(value)
            if shown not in accepted:
                self.unexpected += times
                if len(self.unexpected_sample) < 5 and shown not in self.unexpected_sample:
                    self.unexpected_sample.append(_shown(shown))

    def merge(self, other: "ColumnProfile") -> None:
        """Fold the profile of the same column over other rows into this one."""
        self.count += other.count
        self.nulls += other.nulls
        self.hash_sum = (self.hash_sum + other.hash_sum) & MASK64
        self.sketch.merge(other.sketch)
        for attr, pick in (("minimum", min), ("maximum", max), ("min_length", min), ("max_length", max)):
            mine, theirs = getattr(self, attr), getattr(other, attr)
            setattr(self, attr, theirs if mine is None else mine if theirs is None else pick(mine, theirs))
        with decimal.localcontext(_EXACT):
            self.total = self.total + other.total
        self.unexpected += other.unexpected
        room = 5 - len(self.unexpected_sample)
        self.unexpected_sample += [v for v in other.unexpected_sample if v not in self.unexpected_sample][:room]
        if other.duplicates is not None:
            self.duplicates = (self.duplicates or 0) + other.duplicates

    def as_dict(self, canonical) -> dict:
        present = self.count - self.nulls
        out = {
            "type": self.type,
            "count": present,
            "null_count": self.nulls,
            "null_share": round(self.nulls / self.count, 6) if self.count else 0.0,
            "distinct": min(self.sketch.estimate(), present),
            "min": _shown(canonical(self.minimum)),
            "max": _shown(canonical(self.maximum)),
            "hash": f"{(self.hash_sum + digest(self.type)) & MASK64:016x}",  # a retype changes it
        }
        if self.type in NUMERIC:
            total = self.total if self.type == "integer" else _SHOWN_NUMBER.plus(decimal.Decimal(self.total))
            out["sum"] = canonical(total) if present else None
            out["mean"] = canonical(_SHOWN_NUMBER.divide(decimal.Decimal(self.total), present)) if present else None
        if self.type == "text":
            out["min_length"], out["max_length"] = self.min_length, self.max_length
        if self.accepted is not None:
            out["unexpected_count"], out["unexpected_sample"] = self.unexpected, self.unexpected_sample
        if self.duplicates is not None:
            out["duplicate_values"] = self.duplicates
        return out


def _shown(value):
    if isinstance(value, str) and len(value) > TEXT_SHOWN:
        return value[:TEXT_SHOWN] + "…"
    return value


class TableProfile:
    """Profiles of every column of one destination, fed batch by batch."""

    def __init__(self, columns: list[str], classes: list[str], accepted: dict[str, frozenset] | None = None):
        accepted = accepted or {}
        self.columns = [
            ColumnProfile(name, column_class, accepted.get(name))
            for name, column_class in zip(columns, classes, strict=True)
        ]

    def add_batch(self, batch: list, canonical) -> None:
        for position, column in enumerate(self.columns):
            column.add_values([row[position] for row in batch], canonical)

    def as_dict(self, canonical) -> dict:
        return {column.name: column.as_dict(canonical) for column in self.columns}


def as_float(value) -> float | None:
    """A profile number (int, or canonical decimal text) as a float, for deltas and charts."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(decimal.Decimal(value))
    except (decimal.InvalidOperation, TypeError, ValueError):
        return None
