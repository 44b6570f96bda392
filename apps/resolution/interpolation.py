"""`{{ name }}` interpolation with cycle and unknown-name detection that names the chain."""

import re
from collections.abc import Callable

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


class InterpolationError(Exception):
    code = "interpolation"

    def __init__(self, message: str, chain: list[str]):
        super().__init__(message)
        self.chain = chain


class SecretInterpolation(InterpolationError):
    """A secret variable named in text: a secret's value goes only into a connection's credential
    slot, never into a query, a table name, a path, a parameter or another variable's value."""

    code = "secret_interpolation"

    def __init__(self, variable: str, chain: list[str]):
        via = f" (via {' → '.join([*chain, variable])})" if len(chain) > 1 else ""
        super().__init__(
            f"variable '{variable}' is a secret{via}: secrets are never interpolated into text; "
            "use the secret as a connection's credential",
            [*chain, variable],
        )
        self.variable = variable


def references(text: str) -> list[str]:
    return PLACEHOLDER.findall(text) if isinstance(text, str) else []


class Interpolator:
    """Expands variables' values in place. `lookup(name)` returns (found, value_or_text, is_secret);
    a secret is refused wherever it is named (SecretInterpolation)."""

    def __init__(self, lookup: Callable[[str], tuple[bool, object, bool]]):
        self.lookup = lookup
        self.cache: dict[str, str] = {}

    def expand_name(self, name: str, chain: list[str]) -> str:
        if name in chain:
            cycle = [*chain[chain.index(name) :], name]
            raise InterpolationError(f"cycle: {' → '.join(cycle)}", cycle)
        if name in self.cache:
            return self.cache[name]
        found, value, is_secret = self.lookup(name)
        if not found:
            path = [*chain, name]
            raise InterpolationError(f"unknown variable '{name}' (via {' → '.join(path)})", path)
        if is_secret:
            raise SecretInterpolation(name, chain)
        if isinstance(value, str):
            text = self.expand_text(value, [*chain, name])
        elif value is None:
            path = [*chain, name]
            raise InterpolationError(f"variable '{name}' has no value (via {' → '.join(path)})", path)
        else:
            text = value if isinstance(value, str) else _render(value)
        self.cache[name] = text
        return text

    def expand_text(self, text: str, chain: list[str]) -> str:
        if "{{" not in text:
            return text
        return PLACEHOLDER.sub(lambda m: self.expand_name(m.group(1), chain), text)

    def expand_value(self, value, chain: list[str]):
        """Strings are expanded; JSON containers are walked; other values are returned as they are."""
        if isinstance(value, str):
            return self.expand_text(value, chain)
        if isinstance(value, list):
            return [self.expand_value(v, chain) for v in value]
        if isinstance(value, dict):
            return {k: self.expand_value(v, chain) for k, v in value.items()}
        return value


def _render(value) -> str:
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, sort_keys=True)
