"""API-key scopes. `admin` includes everything; `write` includes `read`; `run` stands alone
("may start runs and report results, nothing else")."""

SCOPES = ("read", "run", "write", "admin")
_SCOPE_IMPLIES = {
    "admin": {"admin", "write", "read", "run"},
    "write": {"write", "read"},
    "read": {"read"},
    "run": {"run"},
}


def scopes_grant(scopes, required: str) -> bool:
    """True when any of `scopes` includes `required`."""
    return any(required in _SCOPE_IMPLIES.get(scope, set()) for scope in scopes or ())


# The attribute on a user object holding the API key the request authenticated with (set by
# tenancy's authentication; read there and by the log context, which sits below tenancy).
API_KEY_ATTR = "_planasonix_api_key"
