"""Schemathesis hooks of the external run (SCHEMATHESIS_HOOKS=scripts.schemathesis_hooks, loaded by
scripts/schemathesis-live.sh): the run must not cut off its own credentials. Without this, an early
`DELETE /api-keys/{id}/` with the run's own key id revoked it and every later operation only ever saw
401 (then 429 from the failed-authentication throttle). Cases that would revoke the run's key, remove
or demote its owner's membership, or change its organization are skipped; every other id is fair game
(the world has spare keys, members and objects of every kind). The protected ids come from
SCHEMATHESIS_PROTECTED, the JSON that scripts/schemathesis_world.py prints."""

import json
import os

import schemathesis

PROTECTED = json.loads(os.environ.get("SCHEMATHESIS_PROTECTED") or "{}")
# (path template, methods) -> which protected id its `id` path parameter must not be.
_GUARDED = {
    "/api/v1/api-keys/{id}/": ({"DELETE"}, "api_key"),
    "/api/v1/memberships/{id}/": ({"PATCH", "PUT", "DELETE"}, "membership"),
    "/api/v1/organizations/{id}/": ({"PATCH", "PUT", "DELETE"}, "organization"),
}


def _same_id(value, protected) -> bool:
    try:
        return int(str(value)) == int(protected)
    except (TypeError, ValueError):
        return False


@schemathesis.hook
def filter_case(context, case):
    guarded = _GUARDED.get(case.operation.path)
    if guarded is None or case.method.upper() not in guarded[0] or guarded[1] not in PROTECTED:
        return True
    return not _same_id((case.path_parameters or {}).get("id"), PROTECTED[guarded[1]])
