"""Hits and misses of the resolution cache, counted in the shared cache so that every web and
worker process adds to the same two numbers (exported by /metrics as a ratio and as counters)."""

from typing import Any

from django.core.cache import cache, caches

from apps.core.cache import ReusedClientRedisCache

_KEYS = {"hit": "resolution-cache:hits", "miss": "resolution-cache:misses"}


def record(result: str) -> None:
    key = _KEYS[result]
    try:
        cache.incr(key)
    except ValueError:  # not there yet (or evicted): start it; a lost race only loses one count
        cache.add(key, 1, timeout=None)


def get(key: str, *, count_miss: bool = True) -> Any:
    """The cached value under `key` (None: not there), its read counted as a hit (or, with
    `count_miss`, a miss): with Redis in the same round trip as the read."""
    backend = caches["default"]
    if isinstance(backend, ReusedClientRedisCache):
        return backend.get_counting(key, _KEYS["hit"], _KEYS["miss"] if count_miss else None)
    value = cache.get(key)
    if value is not None or count_miss:
        record("hit" if value is not None else "miss")
    return value


def counts() -> dict[str, int]:
    values = cache.get_many(list(_KEYS.values()))
    return {result: int(values.get(key) or 0) for result, key in _KEYS.items()}
