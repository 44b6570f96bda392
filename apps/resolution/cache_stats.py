"""Hits and misses of the resolution cache, counted in the shared cache so that every web and
worker process adds to the same two numbers (exported by /metrics as a ratio and as counters)."""

from django.core.cache import cache

_KEYS = {"hit": "resolution-cache:hits", "miss": "resolution-cache:misses"}


def record(result: str) -> None:
    key = _KEYS[result]
    try:
        cache.incr(key)
    except ValueError:  # not there yet (or evicted): start it; a lost race only loses one count
        cache.add(key, 1, timeout=None)


def counts() -> dict[str, int]:
    values = cache.get_many(list(_KEYS.values()))
    return {result: int(values.get(key) or 0) for result, key in _KEYS.items()}
