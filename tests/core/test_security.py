"""Authentication hardening: sign-in lockout on every password sign-in (django-axes), audited and
answered with a page, never a 500; wrong API keys rate-limited per address; a strict
Content-Security-Policy on every screen; HSTS and friends from the environment, with
`check --deploy` clean once TLS is configured."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.contrib.auth import get_user_model
from django.test import Client

User = get_user_model()
REPO = Path(__file__).resolve().parents[2]

# The three password sign-ins: the web screens', the admin's and the browsable API's.
LOGIN_URLS = ["/accounts/login/", "/admin/login/", "/api-auth/login/"]


@pytest.fixture
def lockout(settings):
    settings.AXES_FAILURE_LIMIT = 3
    return settings


@pytest.fixture
def operator(db):
    return User.objects.create_user("root", "root@example.com", "right-pw", is_staff=True, is_superuser=True)


def sign_in(client: Client, url: str, username: str, password: str, address: str = "10.0.0.1"):
    return client.post(url, {"username": username, "password": password}, REMOTE_ADDR=address)


def assert_locked_out_page(response, minutes: int):
    assert response.status_code == 429
    body = response.content.decode()
    assert f"Try again in {minutes} minutes." in body
    assert "Traceback" not in body and "axes" not in body.lower()
    assert response["Retry-After"] == str(minutes * 60)


# --- lockout per account and per address ------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("url", LOGIN_URLS)
def test_failed_sign_ins_lock_the_account_out_even_with_the_right_password(client, lockout, operator, url):
    for _ in range(2):
        assert sign_in(client, url, "root", "wrong").status_code == 200  # the form error, still below the limit
    assert_locked_out_page(sign_in(client, url, "root", "wrong"), minutes=15)
    # The right password from another address does not get in while the account is locked out.
    assert_locked_out_page(sign_in(Client(), url, "root", "right-pw", address="10.9.9.9"), minutes=15)
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_an_address_is_locked_out_whatever_the_accounts_it_tries(client, lockout, operator, developer):
    for name in ("a", "b", "c"):
        sign_in(client, "/accounts/login/", name, "wrong", address="10.0.0.7")
    assert_locked_out_page(sign_in(client, "/accounts/login/", "dev", "pw", address="10.0.0.7"), minutes=15)
    # Another address signs in to the account.
    other = Client()
    assert sign_in(other, "/accounts/login/", "dev", "pw", address="10.0.0.8").status_code == 302


@pytest.mark.django_db
def test_the_lockout_ends_after_the_cool_off(client, lockout, operator):
    from datetime import timedelta

    from django.utils import timezone

    for _ in range(3):
        sign_in(client, "/accounts/login/", "root", "wrong")
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=16))
    assert sign_in(client, "/accounts/login/", "root", "right-pw").status_code == 302


@pytest.mark.django_db
def test_a_successful_sign_in_clears_the_account_s_failures(client, lockout, operator):
    for _ in range(2):
        sign_in(client, "/accounts/login/", "root", "wrong")
    assert sign_in(client, "/accounts/login/", "root", "right-pw").status_code == 302
    fresh = Client()
    for _ in range(2):
        assert sign_in(fresh, "/accounts/login/", "root", "wrong").status_code == 200


@pytest.mark.django_db
def test_the_policy_comes_from_settings(client, settings, operator):
    settings.AXES_FAILURE_LIMIT = 1
    from datetime import timedelta

    settings.AXES_COOLOFF_TIME = timedelta(minutes=1)
    response = sign_in(client, "/admin/login/", "root", "wrong")
    assert response.status_code == 429 and b"Try again in 1 minute." in response.content


@pytest.mark.django_db
def test_force_login_is_not_counted(client, lockout, operator):
    client.force_login(operator)
    assert client.get("/admin/").status_code == 200
    assert not AccessAttempt.objects.exists()


# --- audit ----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_attempts_are_recorded_without_the_password(client, lockout, operator):
    sign_in(client, "/api-auth/login/", "root", "canary-wrong-password")
    sign_in(client, "/admin/login/", "root", "right-pw")
    failure = AccessFailureLog.objects.get()
    assert (failure.username, failure.ip_address, failure.path_info) == ("root", "10.0.0.1", "/api-auth/login/")
    assert AccessLog.objects.filter(username="root", path_info="/admin/login/").exists()
    for model in (AccessAttempt, AccessFailureLog, AccessLog):
        for row in model.objects.values():
            assert "canary-wrong-password" not in str(row)


@pytest.mark.django_db
def test_the_audit_is_read_only_in_the_admin_and_for_superusers_only(client, lockout, operator, platform_staff):
    sign_in(Client(), "/accounts/login/", "someone", "wrong")
    attempt = AccessAttempt.objects.get()
    client.force_login(operator)
    for name in ("accessattempt", "accessfailurelog", "accesslog"):
        assert client.get(f"/admin/axes/{name}/").status_code == 200
        assert client.get(f"/admin/axes/{name}/add/").status_code == 403
    page = client.get(f"/admin/axes/accessattempt/{attempt.pk}/change/")
    assert page.status_code == 200 and b'name="_save"' not in page.content
    assert client.post(f"/admin/axes/accessattempt/{attempt.pk}/delete/", {"post": "yes"}).status_code == 403
    assert AccessAttempt.objects.filter(pk=attempt.pk).exists()
    staff = Client()
    staff.force_login(platform_staff)
    assert staff.get("/admin/axes/accessattempt/").status_code == 403
    assert b"/admin/axes/" not in staff.get("/admin/").content


# --- API keys -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_wrong_api_keys_are_rate_limited_per_address(api, settings, run_key):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "api_key_failure": "3/minute"},
    }
    token = run_key[1]
    for attempt in range(3):
        wrong = api(token=f"pnx_guess{attempt}_{'x' * 32}")
        assert wrong.get("/api/v1/runs/", REMOTE_ADDR="10.1.1.1").status_code == 401
    response = api(token="pnx_guess9_" + "x" * 32).get("/api/v1/runs/", REMOTE_ADDR="10.1.1.1")
    assert response.status_code == 429 and response.json()["error"]["code"] == "throttled"
    assert "Retry-After" in response
    # The right key from the same address waits too; from another address it works.
    assert api(token=token).get("/api/v1/runs/", REMOTE_ADDR="10.1.1.1").status_code == 429
    other = api(token=token).get("/api/v1/runs/", REMOTE_ADDR="10.1.1.2")
    assert other.status_code not in (401, 429)  # authenticated (whatever the key's scopes allow there)


@pytest.mark.django_db
def test_a_client_sent_forwarded_for_header_does_not_pick_the_bucket(api, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "api_key_failure": "2/minute"},
    }
    for attempt in range(3):
        response = api(token=f"pnx_guess{attempt}_{'x' * 32}").get(
            "/api/v1/runs/", REMOTE_ADDR="10.1.1.1", HTTP_X_FORWARDED_FOR=f"192.0.2.{attempt}"
        )
    assert response.status_code == 429


# --- Content-Security-Policy -------------------------------------------------------------------------


def policy(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    return {part.split()[0]: part.split()[1:] for part in header.split("; ")}


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/accounts/login/", "/", "/projects/", "/audit/", "/healthz", "/nowhere/"])
def test_the_screens_have_a_strict_policy(client, members, developer, url):
    if url != "/accounts/login/":
        client.force_login(developer)
    response = client.get(url)
    assert response.status_code == (404 if url == "/nowhere/" else 200)
    csp = policy(response)
    assert csp["default-src"] == ["'self'"]
    assert csp["script-src"] == ["'self'"] and csp["style-src"] == ["'self'"]
    assert csp["frame-ancestors"] == ["'none'"] and csp["object-src"] == ["'none'"]
    assert csp["base-uri"] == ["'none'"] and csp["form-action"] == ["'self'"]


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/admin/login/", "/api-auth/login/", "/api/v1/"])
def test_third_party_screens_get_inline_styles_but_never_inline_scripts(client, url):
    csp = policy(client.get(url))
    assert csp["script-src"] == ["'self'"]
    assert csp["style-src"] == ["'self'", "'unsafe-inline'"]


def test_the_project_s_templates_carry_no_inline_script_or_style():
    """Everything the CSP would block on our own screens: inline scripts, handlers, style attributes."""
    import re

    offenders = []
    pattern = re.compile(r"<script(?![^>]*\bsrc=)|<style|\sstyle=|\son[a-z]+=|javascript:", re.I)
    for folder in [REPO / "templates", *(REPO / "apps").glob("*/templates")]:  # incl. our browsable-API override
        for template in folder.rglob("*.html"):
            offenders += [f"{template}: {m.group(0)}" for m in pattern.finditer(template.read_text())]
    assert offenders == []


@pytest.mark.django_db
def test_the_api_docs_work_under_the_policy(client):
    page = client.get("/api/docs/")
    assert page.status_code == 200
    body = page.content.decode()
    # The start-up script is a file served by the same view, not inline; the rest is self-hosted.
    assert '<script src="/api/docs/?script="></script>' in body
    assert "<script>" not in body
    csp = policy(page)
    assert csp["script-src"] == ["'self'"]
    assert csp["connect-src"] == ["'self'"]
    assert all("//" not in source for directive in csp.values() for source in directive)
    script = client.get("/api/docs/?script")
    assert script.status_code == 200 and b"SwaggerUIBundle" in script.content


# --- TLS, HSTS, check --deploy ------------------------------------------------------------------------


TLS_ENV = {
    "DJANGO_SECRET_KEY": "a-long-random-secret-key-for-the-deploy-check-0123456789-abcdefghijkl",
    "FIELD_ENCRYPTION_KEYS": "bXlfc2VjcmV0X2tleV90aGF0X2lzXzMyX2J5dGVzISE=",
    "DJANGO_ALLOWED_HOSTS": "env.example.com",
    "DJANGO_SECURE_COOKIES": "true",
    "DJANGO_BEHIND_TLS_PROXY": "true",
    "DJANGO_SECURE_SSL_REDIRECT": "true",
    "DJANGO_SECURE_HSTS_SECONDS": "31536000",
    "DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS": "true",
    "DJANGO_SECURE_HSTS_PRELOAD": "true",
}


def deploy_check(tmp_path, **overrides) -> subprocess.CompletedProcess:
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "FIELD_ENCRYPTION", "PYTEST", "LOGIN_"))
    }
    environment.update(TLS_ENV, DJANGO_SETTINGS_MODULE="planasonix_env.settings", PLANASONIX_VAR_DIR=str(tmp_path))
    environment.update(overrides)
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO,
        env={k: v for k, v in environment.items() if v is not None},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_is_clean_when_tls_is_configured(tmp_path):
    result = deploy_check(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_names_what_is_missing_without_hsts(tmp_path):
    result = deploy_check(tmp_path, DJANGO_SECURE_HSTS_SECONDS=None, DJANGO_SECURE_SSL_REDIRECT=None)
    assert result.returncode != 0
    assert "security.W004" in result.stderr + result.stdout and "security.W008" in result.stderr + result.stdout


@pytest.mark.django_db
def test_hsts_and_the_redirect_follow_the_settings(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 3600
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    assert client.get("/accounts/login/")["Location"] == "https://testserver/accounts/login/"
    assert client.get("/healthz").status_code in (200, 503)  # a plain-HTTP probe is not redirected
    secure = client.get("/accounts/login/", HTTP_X_FORWARDED_PROTO="https")
    assert secure.status_code == 200
    assert secure["Strict-Transport-Security"] == "max-age=3600; includeSubDomains"
