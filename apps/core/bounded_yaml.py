"""YAML from users, read within bounds: PyYAML's safe_load has none, so a "billion laughs" file (aliases
of aliases) expands to an object graph every later walk multiplies, a 5,000-deep document exhausts the
stack, and a 5,000-digit integer trips Python's int limit. Every bound refused is a ValidationFailed
naming the document and the line."""

import math

import yaml

from .errors import ValidationFailed

MAX_YAML_BYTES = 2 * 1024 * 1024
MAX_YAML_DEPTH = 64
MAX_YAML_ALIASES = 100
MAX_YAML_NODES = 200_000  # after alias expansion: what every later walk of the document visits
MAX_YAML_INTEGER = 2**63


def _refused(message: str, mark=None) -> ValidationFailed:
    where = f" (line {mark.line + 1})" if mark is not None else ""
    return ValidationFailed(f"document: {message}{where}.", fields={"document": [message + where + "."]})


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader counting nesting and alias uses while composing, and refusing numbers JSON cannot hold."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_YAML_ALIASES:
                raise _refused(f"more than {MAX_YAML_ALIASES} aliases", self.peek_event().start_mark)
        self._depth += 1
        if self._depth > MAX_YAML_DEPTH:
            raise _refused(f"nested deeper than {MAX_YAML_DEPTH} levels", self.peek_event().start_mark)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def get_single_node(self):
        node = super().get_single_node()
        if node is not None and _expanded_size(node, {}) > MAX_YAML_NODES:
            raise _refused(f"more than {MAX_YAML_NODES} values once its aliases are expanded", node.start_mark)
        return node

    def construct_yaml_int(self, node):
        digits = self.construct_scalar(node).lstrip("+-").replace("_", "")
        if len(digits) > 20:
            raise _refused("an integer out of range", node.start_mark)
        value = super().construct_yaml_int(node)
        if abs(value) > MAX_YAML_INTEGER:
            raise _refused("an integer out of range", node.start_mark)
        return value

    def construct_yaml_float(self, node):
        value = super().construct_yaml_float(node)
        if not math.isfinite(value):
            raise _refused("a number that is not finite (.inf, .nan or too large)", node.start_mark)
        return value


def _expanded_size(node, sizes: dict) -> int:
    """Nodes in the document once every alias is replaced by a copy (memoized: linear in its nodes)."""
    if id(node) in sizes:
        return sizes[id(node)]
    if isinstance(node, yaml.MappingNode):
        size = 1 + sum(_expanded_size(k, sizes) + _expanded_size(v, sizes) for k, v in node.value)
    elif isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded_size(child, sizes) for child in node.value)
    else:
        size = 1
    sizes[id(node)] = size
    return size


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _BoundedLoader.construct_yaml_int)
_BoundedLoader.add_constructor("tag:yaml.org,2002:float", _BoundedLoader.construct_yaml_float)


def load_bounded(text: str):
    """The document in `text`, or ValidationFailed naming the first bound or syntax error it breaks."""
    if len(text.encode("utf-8", errors="surrogatepass")) > MAX_YAML_BYTES:
        raise _refused(f"larger than {MAX_YAML_BYTES // (1024 * 1024)} MiB")
    try:
        return yaml.load(text, Loader=_BoundedLoader)  # noqa: S506  (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        raise ValidationFailed(
            f"document: not valid YAML ({exc.__class__.__name__}).", fields={"document": [str(exc)[:300]]}
        ) from None
