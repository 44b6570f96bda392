"""How far the external schemathesis run got: per operation of the schema, the statuses the live
server answered (from gunicorn's access log), and which operations never reached a 2xx.

Usage: python scripts/schemathesis_coverage.py SCHEMA.json ACCESS.log  (prints a summary; exit 0)."""

import json
import re
import sys
from collections import Counter, defaultdict
from urllib.parse import unquote

LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<target>\S+) HTTP/[\d.]+" (?P<status>\d{3}) ')


def operations(schema: dict) -> dict[tuple[str, str], re.Pattern]:
    found = {}
    for path, methods in schema.get("paths", {}).items():
        pattern = re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path)) + "$")
        for method in methods:
            if method in {"get", "post", "put", "patch", "delete"}:
                found[method.upper(), path] = pattern
    return found


def tally(schema: dict, log_lines) -> dict[tuple[str, str], Counter]:
    ops = operations(schema)
    seen: dict[tuple[str, str], Counter] = defaultdict(Counter)
    for line in log_lines:
        match = LINE.search(line)
        if not match:
            continue
        path = unquote(match["target"].split("?", 1)[0])
        for (method, template), pattern in ops.items():
            # Literal routes (e.g. /runs/preview/) win over templated ones (/runs/{id}/).
            if method == match["method"] and pattern.match(path) and "{" not in template:
                seen[method, template][match["status"]] += 1
                break
        else:
            for (method, template), pattern in ops.items():
                if method == match["method"] and pattern.match(path):
                    seen[method, template][match["status"]] += 1
                    break
    return {op: seen.get(op, Counter()) for op in ops}


def main(schema_file: str, log_file: str) -> None:
    with open(schema_file) as handle:
        schema = json.load(handle)
    with open(log_file, errors="replace") as handle:
        counts = tally(schema, handle)
    missing = sorted(op for op, statuses in counts.items() if not any(s.startswith("2") for s in statuses))
    print(f"schemathesis coverage: {len(counts) - len(missing)} of {len(counts)} operations reached a 2xx")
    for method, path in missing:
        statuses = ", ".join(f"{code}×{n}" for code, n in sorted(counts[method, path].items()))
        print(f"  no 2xx: {method} {path} ({statuses or 'never called'})")


if __name__ == "__main__":
    main(*sys.argv[1:3])
