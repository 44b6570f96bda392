"""Column expectations: what a destination's columns must look like, declared on the destination
node of a pipeline's graph (`expectations`) or as an environment's runtime policy (`expectations`,
for every destination of every pipeline run there that has the column).

    {"<column>": {
        "not_null": true,                    # no NULLs
        "unique": true,                      # no value twice (counted by the destination, in SQL)
        "accepted_values": ["a", "b", 1],    # every non-NULL value is one of these (at most 100)
        "range": {"min": 0, "max": 100},     # min/max of the column within (either bound optional)
        "max_null_share": 0.05,              # NULLs at most this share of the rows (0 to 1)
        "max_change": {"count": 10, "sum": 5, "mean": 5, "distinct": 10}
                                             # at most this many percent away from the production baseline
    }}

`validate` returns the expectations or raises ValidationFailed whose fields are
`<prefix>.<column>.<rule>` (the graph's prefix is `graph.nodes[<id>].expectations`)."""

from apps.core.errors import ValidationFailed

RULES = ("not_null", "unique", "accepted_values", "range", "max_null_share", "max_change")
CHANGE_MEASURES = ("count", "sum", "mean", "distinct")
MAX_COLUMNS = 200
MAX_ACCEPTED = 100
MAX_TEXT = 200


def _scalar(value) -> bool:
    if isinstance(value, bool) or value is None:
        return isinstance(value, bool)
    if isinstance(value, int | float):
        return value == value and abs(value) != float("inf")  # no NaN or infinity
    return isinstance(value, str) and len(value) <= MAX_TEXT and "\x00" not in value


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and _scalar(value)


def _column_errors(rules, errors: dict, label: str) -> None:
    if not isinstance(rules, dict) or not rules:
        errors.setdefault(label, []).append(f"An object of rules ({', '.join(RULES)}).")
        return
    for name in sorted(set(rules) - set(RULES)):
        errors.setdefault(f"{label}.{name}", []).append(f"Unknown rule; known: {', '.join(RULES)}.")
    for name in ("not_null", "unique"):
        if name in rules and not isinstance(rules[name], bool):
            errors.setdefault(f"{label}.{name}", []).append("true or false.")
    if "accepted_values" in rules:
        values = rules["accepted_values"]
        if not isinstance(values, list) or not values or len(values) > MAX_ACCEPTED:
            errors.setdefault(f"{label}.accepted_values", []).append(f"A list of 1 to {MAX_ACCEPTED} values.")
        elif not all(_scalar(v) for v in values):
            errors.setdefault(f"{label}.accepted_values", []).append(
                f"Values are strings (at most {MAX_TEXT} characters), finite numbers or booleans."
            )
    if "range" in rules:
        bounds = rules["range"]
        if not isinstance(bounds, dict) or not bounds or set(bounds) - {"min", "max"}:
            errors.setdefault(f"{label}.range", []).append('An object with "min" and/or "max".')
        else:
            kinds = set()
            for end in ("min", "max"):
                value = bounds.get(end)
                if value is None:
                    continue
                if _number(value):
                    kinds.add("number")
                elif isinstance(value, str) and _scalar(value):
                    kinds.add("text")
                else:
                    errors.setdefault(f"{label}.range.{end}", []).append("A finite number or a string.")
            if len(kinds) > 1:
                errors.setdefault(f"{label}.range", []).append("min and max are both numbers or both strings.")
            low, high = bounds.get("min"), bounds.get("max")
            if len(kinds) == 1 and low is not None and high is not None and low > high:
                errors.setdefault(f"{label}.range", []).append("min is greater than max.")
    if "max_null_share" in rules:
        share = rules["max_null_share"]
        if not _number(share) or not 0 <= share <= 1:
            errors.setdefault(f"{label}.max_null_share", []).append("A number from 0 to 1.")
    if "max_change" in rules:
        change = rules["max_change"]
        if not isinstance(change, dict) or not change:
            errors.setdefault(f"{label}.max_change", []).append(
                f"An object of percentages per measure ({', '.join(CHANGE_MEASURES)})."
            )
        else:
            for measure in sorted(change):
                percent = change[measure]
                if measure not in CHANGE_MEASURES:
                    errors.setdefault(f"{label}.max_change.{measure}", []).append(
                        f"Unknown measure; known: {', '.join(CHANGE_MEASURES)}."
                    )
                elif not _number(percent) or percent < 0:
                    errors.setdefault(f"{label}.max_change.{measure}", []).append("A percentage, 0 or more.")


def collect_errors(expectations, prefix: str) -> dict[str, list[str]]:
    """Errors by field (`<prefix>.<column>.<rule>`); empty when the expectations are valid."""
    errors: dict[str, list[str]] = {}
    if not isinstance(expectations, dict):
        return {prefix: ["An object of column name to rules."]}
    if len(expectations) > MAX_COLUMNS:
        return {prefix: [f"At most {MAX_COLUMNS} columns."]}
    for column, rules in expectations.items():
        if not isinstance(column, str) or not column.strip() or len(column) > 63 or "\x00" in column:
            errors.setdefault(prefix, []).append(f"{str(column)[:20]!r} is not a column name (1 to 63 characters).")
            continue
        _column_errors(rules, errors, f"{prefix}.{column}")
    return errors


def validate(expectations, prefix: str = "expectations") -> dict:
    errors = collect_errors(expectations, prefix)
    if errors:
        first_field, first_messages = next(iter(errors.items()))
        raise ValidationFailed(f"{first_field}: {first_messages[0]}", fields=errors)
    return expectations


def combined(node_expectations, policy_expectations) -> dict[str, dict]:
    """A destination's expectations by column: the policy's, overridden rule by rule by its node's."""
    out: dict[str, dict] = {}
    for source in (policy_expectations, node_expectations):
        for column, rules in (source if isinstance(source, dict) else {}).items():
            if isinstance(rules, dict):
                out.setdefault(column, {}).update(rules)
    return out
