"""Rate limits per API key (each key its own bucket), per signed-in user, and per anonymous IP."""

from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle


class PrincipalRateThrottle(SimpleRateThrottle):
    """Picks the bucket by who is calling: an API key, a session user or an anonymous client."""

    def __init__(self):  # the base class resolves one fixed rate here; ours depends on the caller
        self.key = None

    def allow_request(self, request, view):
        key = request.auth
        if key is not None and hasattr(key, "prefix"):
            self.scope, ident = "api_key", f"key:{key.prefix}"
        elif request.user and request.user.is_authenticated:
            self.scope, ident = "user", f"user:{request.user.pk}"
        else:
            self.scope, ident = "anon", f"ip:{self.get_ident(request)}"
        # Read at call time so that changed settings (tests, reloads) apply.
        self.rate = api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)
        if self.rate is None:
            return True
        self.num_requests, self.duration = self.parse_rate(self.rate)
        self.key = self.cache_format % {"scope": self.scope, "ident": ident}
        self.history = self.cache.get(self.key, [])
        self.now = self.timer()
        while self.history and self.history[-1] <= self.now - self.duration:
            self.history.pop()
        if len(self.history) >= self.num_requests:
            return self.throttle_failure()
        return self.throttle_success()

    def get_cache_key(self, request, view):  # required by the base class; allow_request sets self.key
        return self.key
