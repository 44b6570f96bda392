"""Django's Redis cache backend, keeping one client per connection pool.

`django.core.cache.backends.redis.RedisCacheClient.get_client` builds a new `redis.Redis` for
every cache call, and building one fills its table of ~170 response callbacks (a case-insensitive
dict): ~0.3 ms of Python a call, a quarter of an authenticated API request that asks the cache
three times (the key-failure window, the throttle's window read and write). A `redis.Redis` only
holds its pool and that table, and is safe to share between threads (the pool hands out the
connections), so one per pool does.

`incr` is one round trip (a script: INCRBY only when the key exists) instead of Django's EXISTS
then INCRBY (every `cache.incr`). `script` runs a Lua script in
one round trip (the API key's throttle windows, apps.tenancy.throttling); `get_counting` reads a
value and counts the read as a hit or a miss in the same round trip (the resolution cache's counters)."""

from typing import Any

from django.core.cache.backends.redis import RedisCache, RedisCacheClient

_INCR_IF_EXISTS = """
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('INCRBY', KEYS[1], ARGV[1]) end
return false
"""
# KEYS: the value, the hit counter[, the miss counter]. INCR starts a missing counter at 1, as `add`.
_GET_COUNTING = """
local value = redis.call('GET', KEYS[1])
if value then redis.call('INCR', KEYS[2]) elseif KEYS[3] then redis.call('INCR', KEYS[3]) end
return value
"""


class ReusedClientRedisCacheClient(RedisCacheClient):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._clients: dict[int, Any] = {}  # id(pool) -> its Redis client (the pools live as long)
        self._scripts: dict[tuple[int, str], Any] = {}  # (id(client), source) -> the registered script

    def get_client(self, key=None, *, write=False):
        pool = self._get_connection_pool(write)  # type: ignore[attr-defined]  # Django's, untyped in the stubs
        client = self._clients.get(id(pool))
        if client is None:
            client = self._clients[id(pool)] = self._client(connection_pool=pool)  # type: ignore[attr-defined]
        return client

    def incr(self, key, delta):
        value = self.script(_INCR_IF_EXISTS, [key], [delta])  # EVALSHA, loading the script once if the server lacks it
        if value is None:
            raise ValueError(f"Key '{key}' not found.")
        return value

    def script(self, source: str, keys: list, args: list):
        """EVALSHA of `source` (registered once per client) on the write client: one round trip."""
        client = self.get_client(None, write=True)
        registered = self._scripts.get((id(client), source))
        if registered is None:
            registered = self._scripts[(id(client), source)] = client.register_script(source)
        return registered(keys=keys, args=args)


class ReusedClientRedisCache(RedisCache):
    """CACHES' BACKEND for Redis (settings.py puts it in place of Django's own)."""

    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = ReusedClientRedisCacheClient

    def script(self, source: str, keys: list[str], args: list) -> Any:
        """Run a Lua script over these cache keys (versioned and prefixed as every other call's) in
        one round trip, for what needs to read and write in one step."""
        client: ReusedClientRedisCacheClient = self._cache  # type: ignore[assignment]  # self._class above
        return client.script(source, [self.make_and_validate_key(key) for key in keys], args)

    def get_counting(self, key: str, hits: str, misses: str | None = None) -> Any:
        """`get(key)`, counting it in `hits` when found (else in `misses`, if named): one round trip."""
        keys = [key, hits] if misses is None else [key, hits, misses]
        client: ReusedClientRedisCacheClient = self._cache  # type: ignore[assignment]
        value = self.script(_GET_COUNTING, keys, [])
        return None if value is None else client._serializer.loads(value)  # type: ignore[attr-defined]
