"""Rate limits per API key (each key its own bucket), per signed-in user, and per anonymous IP;
failed API-key authentications per client address; the client address itself."""

from rest_framework import exceptions
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle, SimpleRateThrottle


def client_address(request) -> str | None:
    """The caller's address, the one answer for API throttles and sign-in lockouts (django-axes):
    REMOTE_ADDR, or with NUM_PROXIES trusted proxies the Nth address from the right of
    X-Forwarded-For (a client-sent header is believed only that far)."""
    return BaseThrottle().get_ident(request)


def configured_rate(scope: str) -> str | None:
    """The scope's rate in REST_FRAMEWORK's DEFAULT_THROTTLE_RATES ("100/min"), None for unlimited;
    read at call time so that changed settings (tests, reloads) apply."""
    rate = api_settings.DEFAULT_THROTTLE_RATES.get(scope)
    return None if rate is None else str(rate)


def _window(throttle: SimpleRateThrottle, rate: str) -> tuple[int, int]:
    """(number of requests, seconds) of a rate that is set."""
    num_requests, duration = throttle.parse_rate(rate)
    if num_requests is None or duration is None:  # parse_rate answers None only for no rate
        raise ValueError(f"Not a throttle rate: {rate!r}")
    return num_requests, duration


# The API key's window, read by the Bearer authentication together with the failure window (one
# cache round trip instead of two) and kept on the request for PrincipalRateThrottle.
_PREFETCHED_ATTR = "_planasonix_throttle_windows"


def _api_key_window(prefix: str) -> str:
    return SimpleRateThrottle.cache_format % {"scope": "api_key", "ident": f"key:{prefix}"}


def _window_history(throttle: SimpleRateThrottle, request, key: str) -> list:
    """The window's timestamps: prefetched for this request (used once), else read from the cache."""
    prefetched = request.__dict__.get(_PREFETCHED_ATTR) or {}
    if key in prefetched:
        return prefetched.pop(key)
    return throttle.cache.get(key, [])


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
        self.rate = configured_rate(self.scope)
        if self.rate is None:
            return True
        self.num_requests, self.duration = num_requests, duration = _window(self, self.rate)
        self.key = self.cache_format % {"scope": self.scope, "ident": ident}
        self.history = _window_history(self, request, self.key)
        self.now = self.timer()
        while self.history and self.history[-1] <= self.now - duration:
            self.history.pop()
        if len(self.history) >= num_requests:
            return self.throttle_failure()
        return self.throttle_success()

    def get_cache_key(self, request, view):  # required by the base class; allow_request sets self.key
        return self.key


class ApiKeyFailureThrottle(SimpleRateThrottle):
    """Wrong, expired or revoked API keys per client address. Authentication fails before DRF's
    throttles run, so the Bearer authentication asks this one first and counts each failure: an
    address over the rate is refused (429) even with a right key until its window has passed."""

    scope = "api_key_failure"

    def __init__(self):  # the rate is read at call time so that changed settings (tests) apply
        self.rate = configured_rate(self.scope)
        self.num_requests, self.duration = self.parse_rate(self.rate)

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": client_address(request)}

    def refuse_if_over(self, request, *, api_key_prefix: str | None = None) -> None:
        """429 when this address has used up its failures. With the `api_key_prefix` a request
        presents, that key's own rate window is read in the same cache round trip (and kept on the
        request for PrincipalRateThrottle)."""
        if self.rate is None:
            return
        num_requests, duration = _window(self, self.rate)
        self.key = self.get_cache_key(request, None)
        if api_key_prefix is not None and configured_rate("api_key") is not None:
            principal = _api_key_window(api_key_prefix)
            found = self.cache.get_many([self.key, principal])
            request.__dict__[_PREFETCHED_ATTR] = {principal: found.get(principal, [])}
            self.history = found.get(self.key, [])
        else:
            self.history = self.cache.get(self.key, [])
        self.now = self.timer()
        while self.history and self.history[-1] <= self.now - duration:
            self.history.pop()
        if len(self.history) >= num_requests:
            raise exceptions.Throttled(self.wait(), detail="Too many failed API-key authentications from this address.")

    def record_failure(self, request) -> None:
        if self.rate is None:
            return
        self.refuse_if_over(request)  # loads the current window
        self.throttle_success()  # stores this failure in the window
