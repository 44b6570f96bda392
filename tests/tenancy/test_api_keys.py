"""API keys: the token exists once, bearer authentication, scopes, narrowing, use tracking, throttling."""

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.tenancy import services
from apps.tenancy.models import ApiKey, Membership, Role

from .conftest import assert_error

KEYS = "/api/v1/api-keys/"
ORGS = "/api/v1/organizations/"
MEMBERSHIPS = "/api/v1/memberships/"


def _all_values(rows):
    for row in rows:
        yield from (str(value) for value in row.values())


def test_token_is_returned_once_and_only_its_hash_is_stored(api, org, org_admin, members):
    response = api(org_admin).post(KEYS, {"organization": "acme", "name": "deploy", "scopes": ["read", "write"]})
    assert response.status_code == 201, response.content
    token = response.json()["token"]
    key_id = response.json()["key"]["id"]
    assert token.startswith("pnx_")
    assert "token" not in response.json()["key"]
    assert response.json()["key"]["scopes"] == ["read", "write"]

    detail = api(org_admin).get(f"{KEYS}{key_id}/")
    assert token not in detail.content.decode()
    assert token not in api(org_admin).get(KEYS).content.decode()

    secret_part = token.split("_")[2]
    stored = list(ApiKey.objects.filter(pk=key_id).values())
    assert stored and not any(secret_part in value for value in _all_values(stored))
    history = list(ApiKey.history.filter(id=key_id).values())
    assert history and not any(secret_part in value for value in _all_values(history))
    assert "key_hash" not in history[0]


def test_bearer_authentication_works(api, org, members, make_key):
    _, token = make_key(members["developer"], ["read"])
    response = api(token=token).get(ORGS)
    assert response.status_code == 200
    assert [row["slug"] for row in response.json()["results"]] == ["acme"]


def _expired_key(make_key, owner):
    key, token = make_key(owner, ["read"])
    ApiKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    return token


@pytest.mark.parametrize(
    "header",
    [
        "Bearer pnx_AAAAAAAAAA_" + "B" * 40,
        "Bearer not-a-key",
        "Bearer pnx_x",
        "Bearer a b",
        "Bearer pnx_AAAA\x00AAAAA_" + "B" * 40,
        "Bearer pnx_ÄÄÄÄÄÄÄÄÄÄ_" + "B" * 40,
    ],
)
def test_wrong_or_malformed_key_is_401_with_error_shape(api, org, header):
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get(ORGS)
    assert_error(response, 401)
    assert response["WWW-Authenticate"] == "Bearer"


def test_blank_authorization_header_is_not_a_server_error(org):
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="   ")
    assert_error(client.get(ORGS), 401)


def test_tampered_secret_is_401(api, org, members, make_key):
    _, token = make_key(members["developer"], ["read"])
    tampered = token[:-1] + ("a" if token[-1] != "a" else "b")
    assert_error(api(token=tampered).get(ORGS), 401)


def test_expired_key_is_401(api, org, members, make_key):
    assert_error(api(token=_expired_key(make_key, members["developer"])).get(ORGS), 401)


def test_revoked_key_is_401(api, org, members, make_key):
    key, token = make_key(members["developer"], ["read"])
    assert api(token=token).get(ORGS).status_code == 200
    services.api_key_revoke(actor=members["developer"], key=key)
    assert_error(api(token=token).get(ORGS), 401)


def test_key_of_inactive_owner_is_401(api, org, members, make_key):
    developer = members["developer"]
    _, token = make_key(developer, ["read"])
    developer.is_active = False
    developer.save()
    assert_error(api(token=token).get(ORGS), 401)


def test_revoke_through_the_api(api, org, members, make_key):
    developer = members["developer"]
    key, token = make_key(developer, ["read"])
    assert api(developer).delete(f"{KEYS}{key.pk}/").status_code == 204
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert_error(api(token=token).get(ORGS), 401)
    assert api(developer).get(f"{KEYS}{key.pk}/").json()["is_active"] is False


def test_members_cannot_revoke_each_others_keys(api, org, members, make_key):
    key, _ = make_key(members["developer"], ["read"])
    assert_error(api(members["prod_approver"]).delete(f"{KEYS}{key.pk}/"), 404)
    key.refresh_from_db()
    assert key.revoked_at is None


def test_read_key_cannot_post_and_is_told_which_scope_is_missing(api, org, members, make_key):
    _, token = make_key(members["developer"], ["read"])
    before = ApiKey.objects.count()
    error = assert_error(
        api(token=token).post(KEYS, {"organization": "acme", "name": "more", "scopes": ["read"]}),
        403,
        code="permission_denied",
    )
    assert "'admin'" in error["message"]
    assert ApiKey.objects.count() == before


def test_run_key_only_runs(api, org, run_key):
    _, token = run_key
    client = api(token=token)
    assert "'read'" in assert_error(client.get(ORGS), 403)["message"]
    assert "'admin'" in assert_error(client.post(ORGS, {"name": "Nope"}), 403)["message"]


def test_admin_key_of_a_plain_member_cannot_add_members(api, org, members, outsider, make_key):
    _, token = make_key(members["developer"], ["admin"])
    client = api(token=token)
    assert_error(client.post(MEMBERSHIPS, {"organization": "acme", "username": "outsider"}), 403)
    assert not Membership.objects.filter(user=outsider).exists()
    assert_error(client.patch(f"{ORGS}{org.pk}/", {"name": "Taken over"}), 403)


def test_read_key_of_an_owner_cannot_administer(api, org, org_admin, outsider, make_key):
    _, token = make_key(org_admin, ["read", "run"])
    assert_error(api(token=token).post(MEMBERSHIPS, {"organization": "acme", "username": "outsider"}), 403)
    _, admin_token = make_key(org_admin, ["admin"])
    response = api(token=admin_token).post(MEMBERSHIPS, {"organization": "acme", "username": "outsider"})
    assert response.status_code == 201, response.content


def test_key_reaches_only_its_own_organization(api, org, other_org, other_owner, org_admin, make_key):
    services.membership_add(actor=other_owner, organization=other_org, user=org_admin, role=Role.OWNER)
    _, token = make_key(org_admin, ["admin"])
    client = api(token=token)
    assert [row["slug"] for row in client.get(ORGS).json()["results"]] == ["acme"]
    assert_error(client.get(f"{ORGS}{other_org.pk}/"), 404)
    assert {row["organization"] for row in client.get(MEMBERSHIPS).json()["results"]} == {"acme"}
    assert_error(client.patch(f"{ORGS}{other_org.pk}/", {"name": "Hijacked"}), 404)
    before = Membership.objects.filter(organization=other_org).count()
    response = client.post(MEMBERSHIPS, {"organization": "globex", "username": "dev"})
    assert response.status_code in (400, 403, 404)
    assert Membership.objects.filter(organization=other_org).count() == before
    response = client.post(KEYS, {"organization": "globex", "name": "pivot", "scopes": ["admin"]})
    assert response.status_code in (400, 403, 404)
    assert not ApiKey.objects.filter(organization=other_org).exists()
    # The session of the same person still sees both.
    assert {row["slug"] for row in api(org_admin).get(ORGS).json()["results"]} == {"acme", "globex"}


def test_admin_cannot_mint_a_key_that_acts_as_another_person(api, org, plain_admin, org_admin, members):
    """A key owned by someone else lets its creator act as them: an admin must not become the owner."""
    before = ApiKey.objects.count()
    response = api(plain_admin).post(
        KEYS, {"organization": "acme", "name": "as-owner", "scopes": ["admin"], "owner": org_admin.username}
    )
    assert_error(response, 400, field="owner")
    assert ApiKey.objects.count() == before


def test_key_owner_of_another_organization_answers_like_an_unknown_user(api, org, org_admin, other_org, other_owner):
    """The owner is looked up among the organization's members: a user of another organization and
    a username nobody has get the same 400, so the endpoint is no oracle of which usernames exist."""
    before = ApiKey.objects.count()
    answers = {}
    for username in (other_owner.username, "nobody-by-this-name"):
        body = {"organization": "acme", "name": "probe", "scopes": ["read"], "owner": username}
        answers[username] = assert_error(api(org_admin).post(KEYS, body), 400, field="owner")
    foreign, unknown = answers[other_owner.username], answers["nobody-by-this-name"]
    assert foreign["message"].replace(other_owner.username, "X") == unknown["message"].replace(
        "nobody-by-this-name", "X"
    )
    assert list(foreign["fields"]) == list(unknown["fields"]) == ["owner"]
    assert ApiKey.objects.count() == before


def test_admin_creates_a_key_for_a_service_account(api, org, org_admin, service_account):
    response = api(org_admin).post(
        KEYS, {"organization": "acme", "name": "ci", "scopes": ["run"], "owner": service_account.user.username}
    )
    assert response.status_code == 201, response.content
    assert ApiKey.objects.get(pk=response.json()["key"]["id"]).owner == service_account.user


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"organization": "acme", "name": "k", "scopes": []}, "scopes"),
        ({"organization": "acme", "name": "k", "scopes": ["root"]}, "scopes.0"),
        ({"organization": "acme", "name": "k", "scopes": "read"}, "scopes"),
        ({"organization": "acme", "name": "k" * 81, "scopes": ["read"]}, "name"),
        ({"organization": "acme", "name": "k\x00", "scopes": ["read"]}, "name"),
        ({"organization": "acme", "name": "k", "scopes": ["read"], "expires_at": "yesterday"}, "expires_at"),
        ({"organization": "acme", "name": "k", "scopes": ["read"], "expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
        ({"organization": "acme", "name": "k", "scopes": ["read"], "prefix": "mine"}, "prefix"),
        ({"organization": "acme", "name": "k", "scopes": ["read"], "owner": "nobody"}, "owner"),
    ],
)
def test_create_bad_input(api, org, org_admin, payload, field):
    before = ApiKey.objects.count()
    assert_error(api(org_admin).post(KEYS, payload), 400, field=field)
    assert ApiKey.objects.count() == before


def test_last_used_at_is_updated_without_history(api, org, members, make_key, settings):
    settings.API_KEY_LAST_USED_RESOLUTION_SECONDS = 60
    key, token = make_key(members["developer"], ["read"])
    history_before = ApiKey.history.filter(id=key.pk).count()
    assert key.last_used_at is None
    assert api(token=token).get(ORGS).status_code == 200
    key.refresh_from_db()
    first_use = key.last_used_at
    assert first_use is not None
    assert api(token=token).get(ORGS).status_code == 200
    key.refresh_from_db()
    assert key.last_used_at == first_use  # within the resolution: not written again
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=first_use - timedelta(minutes=5))
    assert api(token=token).get(ORGS).status_code == 200
    key.refresh_from_db()
    assert key.last_used_at > first_use - timedelta(minutes=5)
    assert ApiKey.history.filter(id=key.pk).count() == history_before


def test_throttling_gives_429_with_retry_after_per_key(api, org, members, make_key, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"api_key": "2/minute", "user": "100/minute", "anon": "100/minute"},
    }
    _, first = make_key(members["developer"], ["read"])
    _, second = make_key(members["developer"], ["read", "run"])
    client = api(token=first)
    assert client.get(ORGS).status_code == 200
    assert client.get(ORGS).status_code == 200
    response = client.get(ORGS)
    assert_error(response, 429, code="throttled")
    assert int(response["Retry-After"]) > 0
    # Each key is its own bucket; the owner's session is another one.
    assert api(token=second).get(ORGS).status_code == 200
    assert api(members["developer"]).get(ORGS).status_code == 200


def test_session_users_are_throttled_per_user(api, org, members, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"api_key": "100/minute", "user": "1/minute", "anon": "100/minute"},
    }
    assert api(members["developer"]).get(ORGS).status_code == 200
    response = api(members["developer"]).get(ORGS)
    assert_error(response, 429)
    assert "Retry-After" in response
    assert api(members["prod_approver"]).get(ORGS).status_code == 200


def test_list_query_count_is_bounded(api, org, org_admin, service_account, make_key, django_assert_max_num_queries):
    for index in range(10):
        services.api_key_create(
            actor=org_admin, organization=org, name=f"k{index}", scopes=["read"], owner=service_account.user
        )
    client = api(org_admin)
    with django_assert_max_num_queries(6):
        response = client.get(KEYS)
    assert response.status_code == 200
    assert response.json()["count"] == 10


def test_list_through_a_key_is_bounded(api, org, org_admin, make_key, django_assert_max_num_queries):
    _, token = make_key(org_admin, ["admin"])
    for index in range(5):
        services.api_key_create(actor=org_admin, organization=org, name=f"k{index}", scopes=["read"])
    client = api(token=token)
    with django_assert_max_num_queries(7):
        response = client.get(KEYS)
    assert response.status_code == 200
    assert response.json()["count"] == 6


def test_nul_token_never_reaches_the_database(org):
    """PostgreSQL cannot compare strings with NUL characters; the lookup must refuse them first."""
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer pnx_\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00_" + "x" * 40)
    assert_error(client.get(ORGS), 401)


def test_key_of_an_owner_no_longer_a_member_is_401(api, org, members, make_key):
    developer = members["developer"]
    _, token = make_key(developer, ["read"])
    assert api(token=token).get(ORGS).status_code == 200
    Membership.objects.filter(organization=org, user=developer).delete()
    assert_error(api(token=token).get(ORGS), 401)


def test_the_key_its_owner_organization_and_role_come_in_one_query(org, members, make_key, django_assert_num_queries):
    from apps.tenancy.permissions import attach_api_key, member_organization_ids, org_role

    developer = members["developer"]
    key, token = make_key(developer, ["read"])
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=timezone.now())  # no last_used write below
    role = Membership.objects.get(organization=org, user=developer).role
    with django_assert_num_queries(1):
        found = services.api_key_authenticate(token)
        attach_api_key(found.owner, found)
        # The owner, the organization and the owner's role there are loaded: no further query.
        assert (found.owner.username, found.organization.slug) == (developer.username, org.slug)
        assert org_role(found.owner, org) == role
        assert member_organization_ids(found.owner) == {org.pk}
    assert found.pk == key.pk and found.scopes == ["read"] and found.last_used_at is not None
    assert found.owner.date_joined == developer.date_joined  # columns converted as the ORM would


def test_a_key_request_reads_both_rate_windows_in_one_cache_call(api, org, members, make_key, settings, monkeypatch):
    """The failure window of the address and the key's own window come in one get_many; the key's
    throttle uses that read (no second one) and still refuses the request over its rate."""
    from rest_framework.throttling import SimpleRateThrottle

    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {
            "api_key": "2/minute",
            "user": "100/minute",
            "anon": "100/minute",
            "api_key_failure": "20/minute",
        },
    }
    real = SimpleRateThrottle.cache
    reads: list[str] = []

    class Counting:
        def get(self, key, default=None):
            reads.append("get")
            return real.get(key, default)

        def get_many(self, keys):
            reads.append("get_many")
            return real.get_many(keys)

        def set(self, *args, **kwargs):
            return real.set(*args, **kwargs)

    monkeypatch.setattr(SimpleRateThrottle, "cache", Counting())
    _, token = make_key(members["developer"], ["read"])
    client = api(token=token)
    assert client.get(ORGS).status_code == 200
    assert reads == ["get_many"]
    assert client.get(ORGS).status_code == 200
    assert_error(client.get(ORGS), 429, code="throttled")
    assert reads == ["get_many"] * 3


def test_a_changed_role_applies_to_the_keys_next_request(api, org, org_admin, members, outsider, make_key):
    developer = members["developer"]
    _, token = make_key(developer, ["admin"])
    client = api(token=token)
    assert_error(client.patch(f"{ORGS}{org.pk}/", {"name": "Renamed"}), 403)
    membership = Membership.objects.get(organization=org, user=developer)
    services.membership_change_role(actor=org_admin, membership=membership, role=Role.ADMIN)
    assert client.patch(f"{ORGS}{org.pk}/", {"name": "Renamed"}).status_code == 200
    services.membership_change_role(actor=org_admin, membership=membership, role=Role.MEMBER)
    assert_error(client.patch(f"{ORGS}{org.pk}/", {"name": "Again"}), 403)


def _tight_key_rate(settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {
            **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
            "api_key": "2/minute",
            "api_key_failure": "20/minute",
        },
    }


def test_requests_refused_before_the_throttle_do_not_use_the_keys_rate(api, org, members, make_key, settings):
    """A 403 (missing scope) and a wrong secret with the key's prefix leave the key's window as it was."""
    _tight_key_rate(settings)
    key, token = make_key(members["developer"], ["read"])
    client = api(token=token)
    for _ in range(3):
        assert_error(client.post(KEYS, {"organization": "acme", "name": "more", "scopes": ["read"]}), 403)
    wrong = f"pnx_{key.prefix}_{'x' * 40}"
    for _ in range(3):
        assert_error(api(token=wrong).get(ORGS), 401)
    assert client.get(ORGS).status_code == 200
    assert client.get(ORGS).status_code == 200
    response = client.get(ORGS)
    assert_error(response, 429, code="throttled")
    assert 0 < int(response["Retry-After"]) <= 60


def test_a_key_request_on_redis_asks_the_cache_once(api, org, members, make_key, settings, monkeypatch):
    """With Redis, the failure window and the key's window are checked and counted in one script
    before the key's query; the throttle then asks nothing more."""
    from django.core.cache import caches

    from apps.core.cache import ReusedClientRedisCache

    cache = caches["default"]
    if not isinstance(cache, ReusedClientRedisCache):
        pytest.skip("the one-round-trip path is Redis's")
    _tight_key_rate(settings)
    calls: list[str] = []
    for name in ("script", "get", "get_many", "set"):
        real = getattr(cache, name)
        monkeypatch.setattr(cache, name, lambda *a, _real=real, _name=name, **k: calls.append(_name) or _real(*a, **k))
    _, token = make_key(members["developer"], ["read"])
    client = api(token=token)
    ApiKey.objects.update(last_used_at=timezone.now())
    assert client.get(ORGS).status_code == 200
    assert calls == ["script"]
    assert client.get(ORGS).status_code == 200
    assert_error(client.get(ORGS), 429, code="throttled")
    assert calls == ["script"] * 3
