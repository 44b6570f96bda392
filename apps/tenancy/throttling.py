"""Rate limits per API key (each key its own bucket), per signed-in user, and per anonymous IP;
failed API-key authentications per client address; the client address itself."""

import hashlib
import hmac
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import DEFAULT_CACHE_ALIAS, caches
from django.core.cache import cache as default_cache
from rest_framework import exceptions
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle, SimpleRateThrottle

from apps.core.cache import ReusedClientRedisCache


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


# --- With the project's Redis cache: one round trip per API-key request ---------------------------
# Before the key is looked up, one script checks the address's failure window and counts the request
# in the key's rate window if it is under its rate; PrincipalRateThrottle then uses that answer
# instead of reading and writing the window again. A request that fails in between takes its count
# back (a wrong key: in the failure script; a 403 or any other error before the throttle: through
# apps.core.api_errors.on_api_error), so the requests left counted are those the throttle let
# through, as with DRF's throttle (which, reading then writing, could also let two requests at once
# past the last slot; the script cannot). The key's window is named by a digest of the whole token,
# not by its prefix, so that a wrong secret with a real key's prefix never touches that key's window.
# The windows are Redis lists of timestamps, newest first (DRF's `history`), for the scripts to
# read and write in place; other caches keep DRF's pickled lists (the code above).

_SCRIPT_HELPERS = """
local now = tonumber(ARGV[1])
local function trimmed(key, seconds)  -- drops the timestamps <= now - seconds; count, oldest
  while true do
    local oldest = redis.call('LINDEX', key, -1)
    if not oldest or tonumber(oldest) > now - seconds then break end
    redis.call('RPOP', key)
  end
  return redis.call('LLEN', key), redis.call('LINDEX', key, -1)
end
local function add(key, seconds)
  redis.call('LPUSH', key, ARGV[1])
  redis.call('EXPIRE', key, seconds)
end
"""
# KEYS: the failure window[, the key's window]; ARGV: now, failures allowed, seconds[, requests allowed, seconds].
# {0, count, oldest}: over the failures; {1}: no key window; {2, count, oldest}: over the key's rate; {3}: counted.
_ADMIT = (
    _SCRIPT_HELPERS
    + """
local failures, oldest = trimmed(KEYS[1], tonumber(ARGV[3]))
if failures >= tonumber(ARGV[2]) then return {0, failures, oldest} end
if #KEYS == 1 then return {1} end
local count, first = trimmed(KEYS[2], tonumber(ARGV[5]))
if count >= tonumber(ARGV[4]) then return {2, count, first} end
add(KEYS[2], ARGV[5])
return {3}
"""
)
# KEYS: the failure window[, a key's window to take ARGV[4] back from]; ARGV: now, failures allowed, seconds[, ts].
# {0, count, oldest}: over the failures (not counted); {1}: counted.
_FAIL = (
    _SCRIPT_HELPERS
    + """
if #KEYS == 2 then redis.call('LREM', KEYS[2], 1, ARGV[4]) end
local failures, oldest = trimmed(KEYS[1], tonumber(ARGV[3]))
if failures >= tonumber(ARGV[2]) then return {0, failures, oldest} end
add(KEYS[1], ARGV[3])
return {1}
"""
)
_ADMITTED_ATTR = "_planasonix_api_key_admitted"


def _redis_windows() -> ReusedClientRedisCache | None:
    cache = SimpleRateThrottle.cache
    if cache is default_cache:  # DRF's is Django's proxy of the default cache
        cache = caches[DEFAULT_CACHE_ALIAS]
    return cache if isinstance(cache, ReusedClientRedisCache) else None


def _wait(now: float, num_requests: int, duration: int, count: int, oldest: bytes | None) -> float | None:
    """SimpleRateThrottle.wait's answer for a window of `count` timestamps, the oldest `oldest`."""
    remaining = duration - (now - float(oldest)) if count and oldest is not None else duration
    available = num_requests - count + 1
    return None if available <= 0 else remaining / available


def _token_window(token: str) -> str:
    """The key's window in Redis, named by a keyed digest of the token (neither it nor its stored hash)."""
    digest = hmac.new(settings.SECRET_KEY.encode(), b"api-key-rate-window:" + token.encode(), hashlib.sha256)
    return _api_key_window(f"token:{digest.hexdigest()[:32]}") + ":list"


def _throttled_per_principal(request) -> bool:
    """Whether the request's view runs PrincipalRateThrottle (only then may it be counted up front)."""
    view = (getattr(request, "parser_context", None) or {}).get("view")
    return view is not None and any(issubclass(throttle, PrincipalRateThrottle) for throttle in view.throttle_classes)


@dataclass
class _Admission:
    """The up-front answer for the key's window: counted (and not yet used by the throttle), or over the rate."""

    cache: ReusedClientRedisCache
    window: str
    stamp: str
    counted: bool
    wait: float | None = None

    def take_back(self) -> None:
        if self.counted:
            self.counted = False
            self.cache.script("return redis.call('LREM', KEYS[1], 1, ARGV[1])", [self.window], [self.stamp])


class PrincipalRateThrottle(SimpleRateThrottle):
    """Picks the bucket by who is calling: an API key, a session user or an anonymous client."""

    def __init__(self):  # the base class resolves one fixed rate here; ours depends on the caller
        self.key = None
        self.admission: _Admission | None = None

    def allow_request(self, request, view):
        key = request.auth
        if key is not None and hasattr(key, "prefix"):
            self.admission = admission = request.__dict__.pop(_ADMITTED_ATTR, None)
            if admission is not None:  # counted up front (Redis): keep the count, or refuse
                allowed, admission.counted = admission.counted, False
                return allowed
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

    def wait(self):
        return self.admission.wait if self.admission is not None else super().wait()


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

    def refuse_if_over(self, request, *, api_key_prefix: str | None = None, token: str | None = None) -> None:
        """429 when this address has used up its failures. With the `api_key_prefix` of the `token`
        a request presents, that key's own rate window is read in the same cache round trip (and
        kept on the request for PrincipalRateThrottle); with Redis, counted in it (see above)."""
        if self.rate is None:
            return
        num_requests, duration = _window(self, self.rate)
        self.key = self.get_cache_key(request, None)
        redis = _redis_windows()
        if redis is not None:
            return self._admit(redis, request, num_requests, duration, token if api_key_prefix is not None else None)
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
        redis = _redis_windows()
        if redis is not None:
            return self._fail(redis, request)
        self.refuse_if_over(request)  # loads the current window
        self.throttle_success()  # stores this failure in the window

    def _refuse(self, num_requests: int, duration: int, count: int, oldest) -> None:
        wait = _wait(self.now, num_requests, duration, count, oldest)
        raise exceptions.Throttled(wait, detail="Too many failed API-key authentications from this address.")

    def _admit(self, redis, request, num_requests: int, duration: int, token: str | None) -> None:
        self.now = self.timer()
        stamp, keys = repr(self.now), [f"{self.key}:list"]
        args: list = [stamp, num_requests, duration]
        rate = configured_rate("api_key")
        if token is not None and rate is not None and _throttled_per_principal(request):
            keys.append(_token_window(token))
            args.extend(_window(self, rate))
        answer = redis.script(_ADMIT, keys, args)
        if answer[0] == 0:
            self._refuse(num_requests, duration, *answer[1:3])
        if answer[0] == 1:
            return
        admission = _Admission(redis, keys[1], stamp, counted=answer[0] == 3)
        if not admission.counted:
            admission.wait = _wait(self.now, *_window(self, rate or ""), *answer[1:3])
        request.__dict__[_ADMITTED_ATTR] = admission
        from apps.core.api_errors import on_api_error  # imports DRF's views, which import this module's settings

        on_api_error(request, admission.take_back)

    def _fail(self, redis, request) -> None:
        """Counts a failure (unless the address is over already: 429) and takes back the request's
        count in the key's window, in one round trip."""
        num_requests, duration = _window(self, self.rate or "")
        self.now = self.timer()
        keys, args = [self.get_cache_key(request, None) + ":list"], [repr(self.now), num_requests, duration]
        admission = request.__dict__.pop(_ADMITTED_ATTR, None)
        if admission is not None and admission.counted:
            admission.counted = False
            keys.append(admission.window)
            args.append(admission.stamp)
        answer = redis.script(_FAIL, keys, args)
        if answer[0] == 0:
            self._refuse(num_requests, duration, *answer[1:3])
