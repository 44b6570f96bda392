"""`{{ name }}` interpolation with cycle and unknown-name detection that names the chain."""

import re
from collections.abc import Callable

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


class InterpolationError(Exception):
    def __init__(self, message: str, chain: list[str]):
        super().__init__(message)
        self.chain = chain


def references(text: str) -> list[str]:
    return PLACEHOLDER.findall(text) if isinstance(text, str) else []


class Interpolator:
    """Expands variables' values in place. `lookup(name)` returns (found, value_or_text, is_secret)."""

    def __init__(self, lookup: Callable[[str], tuple[bool, object, bool]]):
        self.lookup = lookup
        self.cache: dict[str, str] = {}

    def expand_name(self, name: str, chain: list[str]) -> str:
        if name in chain:
            cycle = [*chain[chain.index(name) :], name]
            raise InterpolationError(f"cycle: {' → '.join(cycle)}", cycle)
        if name in self.cache:
            return self.cache[name]
        found, value, _is_secret = self.lookup(name)
        if not found:
            path = [*chain, name]
            raise InterpolationError(f"unknown variable '{name}' (via {' → '.join(path)})", path)
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
