"""The egress policy's address logic (apps/core/egress.py) and `check_url` for Git remotes: the
platform's own endpoints are never targets, loopback/link-local/metadata/unspecified addresses only
through the operator's allow-list, private ranges by setting, organization lists on top."""

import ipaddress
from types import SimpleNamespace

import pytest
from django.core.exceptions import ValidationError

from apps.core import egress
from apps.core.egress import EgressRefused

LOOPBACK_AND_METADATA = [
    "127.0.0.1",
    "127.1",  # inet_aton's short form: caught because the resolved address is checked
    "2130706433",  # 127.0.0.1 as one number
    "localhost",
    "::1",
    "::ffff:127.0.0.1",
    "0.0.0.0",  # noqa: S104
    "::",
    "169.254.169.254",
    "169.254.10.1",
    "fe80::1",
    "fd00:ec2::254",
]


def org(allow=(), deny=()):
    return SimpleNamespace(egress_allow=list(allow), egress_deny=list(deny))


@pytest.mark.parametrize("host", LOOPBACK_AND_METADATA)
def test_loopback_link_local_metadata_and_unspecified_are_refused_by_default(host):
    with pytest.raises(EgressRefused) as exc:
        egress.check_target("postgres", host, 5432, organization=org(), field="params.host", database="d")
    assert exc.value.fields == {"params.host": [exc.value.fields["params.host"][0]]}
    assert exc.value.status == 400


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "169.254.169.254"])
def test_only_the_operator_allow_list_opens_them(host, settings):
    with pytest.raises(EgressRefused):
        egress.check_target("http", host, 80, organization=org(allow=["warehouse.example.com"]), field="f")
    settings.EGRESS_ALLOW = ["127.0.0.0/8", "::1/128", "169.254.169.254/32"]
    assert egress.check_target("http", host, 80, organization=org(), field="f")


def test_an_organization_cannot_allow_list_loopback_or_metadata():
    for entry in ("127.0.0.1", "0.0.0.0/0", "169.254.169.254/32", "fe80::/10", "::/0"):
        with pytest.raises(ValidationError):
            egress.validate_organization_allow([entry])
    egress.validate_organization_allow(["10.0.0.0/8", "*.corp.example.com", "2001:db8::/32"])


def test_an_organization_allow_listed_name_that_resolves_to_loopback_stays_refused(dns):
    dns["sneaky.example.com"] = ["127.0.0.1"]
    with pytest.raises(EgressRefused, match="loopback"):
        egress.check_target("http", "sneaky.example.com", 80, organization=org(allow=["sneaky.example.com"]), field="f")


@pytest.mark.parametrize("value", [["10.0.0.0/33"], ["not a host!"], ["1.2.3.4.5"], "10.0.0.0/8", [7], ["x"] * 201])
def test_bad_list_entries_are_refused(value):
    with pytest.raises(ValidationError):
        egress.validate_organization_deny(value)


def test_private_ranges_are_allowed_by_default_and_refused_when_the_operator_says_so(settings):
    assert egress.check_target("postgres", "10.1.2.3", 5432, organization=org(), field="f", database="d")
    settings.EGRESS_ALLOW_PRIVATE = False
    with pytest.raises(EgressRefused, match="private"):
        egress.check_target("postgres", "10.1.2.3", 5432, organization=org(), field="f", database="d")
    allowed = org(allow=["10.1.0.0/16"])
    assert egress.check_target("postgres", "10.1.2.3", 5432, organization=allowed, field="f", database="d")


def test_deny_lists_beat_allow_lists(settings, dns):
    dns["warehouse.corp.example.com"] = ["10.1.2.3"]
    with pytest.raises(EgressRefused, match="deny-list"):
        egress.check_target(
            "postgres", "10.1.2.3", 5432, organization=org(allow=["10.1.0.0/16"], deny=["10.1.2.0/24"]), field="f"
        )
    with pytest.raises(EgressRefused, match="deny-list"):
        egress.check_target(
            "http", "warehouse.corp.example.com", 443, organization=org(deny=["*.corp.example.com"]), field="f"
        )
    settings.EGRESS_DENY = ["10.1.0.0/16"]
    settings.EGRESS_ALLOW = ["10.1.2.3"]
    with pytest.raises(EgressRefused, match="deny-list"):
        egress.check_target("postgres", "10.1.2.3", 5432, organization=org(allow=["10.1.2.3"]), field="f")


def test_the_platform_endpoints_from_settings_are_never_targets(network_platform, dns):
    dns["broker.internal"] = ["10.20.0.6"]
    dns["alias-of-the-broker.example.com"] = ["10.20.0.6"]
    everything = org(allow=["10.0.0.0/8", "broker.internal"])
    network_platform.EGRESS_ALLOW = ["10.0.0.0/8", "broker.internal"]
    endpoints = egress.platform_endpoints()
    # Whatever this run itself uses (PostgreSQL/Redis in CI) is among them, plus the ones added above.
    assert {("10.20.0.5", 5432), ("broker.internal", 6379), ("10.20.0.7", 6380), ("10.20.0.8", 587)} <= {
        (e.host, e.port) for e in endpoints
    }
    for endpoint in endpoints:
        database = next(iter(endpoint.databases)) if endpoint.databases else None
        with pytest.raises(EgressRefused, match="platform's own"):
            egress.check_target(
                "postgres",
                endpoint.host,
                endpoint.port,
                organization=everything,
                field="params.host",
                database=database,
            )
    # ...by resolved address too, under another name.
    with pytest.raises(EgressRefused, match="Celery broker"):
        egress.check_target("http", "alias-of-the-broker.example.com", 6379, organization=everything, field="f")
    # Another database on the platform's database server: only through the operator's allow-list.
    network_platform.EGRESS_ALLOW = []
    with pytest.raises(EgressRefused, match="database server"):
        egress.check_target("postgres", "10.20.0.5", 5432, organization=everything, field="f", database="other")
    network_platform.EGRESS_ALLOW = ["10.20.0.5"]
    assert egress.check_target("postgres", "10.20.0.5", 5432, organization=org(), field="f", database="other")


@pytest.mark.parametrize("bind", ["0.0.0.0:8000", "127.0.0.1:8000", "[::]:8000"])
def test_the_platforms_own_web_address_is_never_a_target(settings, dns, bind):
    """SITE_URL (by name and by resolved address) and the address the web processes listen on are
    refused even when the operator allow-lists loopback and the organization the host: a binding,
    connection test or webhook could otherwise call the platform's own API from inside."""
    settings.SITE_URL = "https://envs.example.com"
    settings.WEB_BIND = bind
    settings.EGRESS_ALLOW = ["127.0.0.0/8", "::1/128", "10.0.0.0/8"]
    dns["envs.example.com"] = ["10.30.0.9"]
    dns["alias-of-the-site.example.com"] = ["10.30.0.9"]
    everything = org(allow=["envs.example.com", "alias-of-the-site.example.com"])
    with pytest.raises(EgressRefused, match="web address"):
        egress.check_url("https://envs.example.com/api/v1/", organization=everything, field="target")
    with pytest.raises(EgressRefused, match="web address"):
        egress.check_url("https://alias-of-the-site.example.com/hook", organization=everything, field="target")
    loopback = ["127.0.0.1"] if bind.startswith("127.") else ["127.0.0.1", "localhost", "::1"]
    for host in loopback:
        with pytest.raises(EgressRefused, match="web server"):
            egress.check_target("http", host, 8000, organization=everything, field="params.host")
    # Other ports of the same host stay open to the operator's allow-list.
    assert egress.check_target("http", "127.0.0.1", 8001, organization=everything, field="params.host")
    assert egress.check_url("http://alias-of-the-site.example.com:8443/", organization=everything, field="target")


def test_names_that_do_not_resolve_pass_on_save_and_fail_on_connect(dns):
    assert egress.check_target("postgres", "later.example.com", 5432, organization=org(), field="f") == []
    with pytest.raises(EgressRefused, match="does not resolve"):
        egress.check_target("postgres", "later.example.com", 5432, organization=org(), field="f", connect=True)


@pytest.mark.parametrize("host", ["/var/run/postgresql", "a,b", "host name", "", None, "*.example.com", "a@b"])
def test_hosts_must_be_names_or_addresses(host):
    with pytest.raises(EgressRefused):
        egress.check_target("postgres", host, 5432, organization=org(), field="params.host")


# --- Git remotes (check_url) --------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/acme/pipelines.git",
        "http://localhost:3000/acme/pipelines.git",
        "ssh://git@[::1]:2222/acme/pipelines.git",
        "git://169.254.169.254/x",
        "git@127.0.0.1:acme/pipelines.git",
        "git@[::1]:acme/pipelines.git",
        "file:///srv/git/pipelines.git",
        "/srv/git/pipelines.git",
        "ext::sh -c touch% /tmp/pwned",
        "fd::17",
        "-uhttps://example.com/x",
        "ftp://example.com/x",
    ],
)
def test_git_remotes_to_the_host_or_local_transports_are_refused(url):
    with pytest.raises(EgressRefused) as exc:
        egress.check_url(url, organization=org(), field="repository_url")
    assert "repository_url" in exc.value.fields


def test_git_remotes_to_the_platform_are_refused_even_when_allow_listed(network_platform, dns):
    dns["broker.internal"] = ["10.20.0.6"]
    network_platform.EGRESS_ALLOW = ["10.0.0.0/8"]
    with pytest.raises(EgressRefused, match="platform's own"):
        egress.check_url("ssh://git@broker.internal:6379/x.git", organization=org(), field="repository_url")


def test_git_remotes_allowed(dns, settings):
    dns["git.example.com"] = ["203.0.113.10"]
    for url in (
        "https://git.example.com/acme/pipelines.git",
        "ssh://git@git.example.com/acme/pipelines.git",
        "git@git.example.com:acme/pipelines.git",
        "git://git.example.com/acme/pipelines.git",
    ):
        assert egress.check_url(url, organization=org(), field="repository_url", connect=True) == [
            ipaddress.ip_address("203.0.113.10")
        ]
    settings.EGRESS_ALLOW = ["127.0.0.1"]
    assert egress.check_url("git@127.0.0.1:acme/p.git", organization=org(), field="repository_url")


def test_a_bad_operator_list_stops_start_up(settings):
    from apps.core.checks import egress_settings

    assert egress_settings(None) == []
    settings.EGRESS_DENY = ["10.0.0.0/8", "10.0.0.0/99"]
    assert [e.id for e in egress_settings(None)] == ["planasonix.E001"]
