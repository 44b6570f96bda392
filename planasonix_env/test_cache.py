"""A Redis cache for tests run in parallel: Django's RedisCache.clear() is FLUSHDB, which would wipe
the keys of every other pytest-xdist worker sharing the database; this one deletes only the keys
under its own KEY_PREFIX (test_settings gives each worker its own)."""

from apps.core.cache import ReusedClientRedisCache


class PrefixedRedisCache(ReusedClientRedisCache):
    def __init__(self, server, params):
        super().__init__(server, params)
        if not self.key_prefix:
            raise ValueError("PrefixedRedisCache needs a KEY_PREFIX: clear() deletes only the keys under it")

    def clear(self):
        client = self._cache.get_client(write=True)
        # The default key function writes "<prefix>:<version>:<key>"; SCAN never blocks the server.
        batch = []
        for key in client.scan_iter(match=f"{self.key_prefix}:*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                client.delete(*batch)
                batch.clear()
        if batch:
            client.delete(*batch)
        return True
