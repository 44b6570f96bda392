"""The strict Content-Security-Policy in a real browser: the screens, the admin and the browsable
API load and work with nothing blocked (Chromium reports every violation on the console), and the
lockout page appears after too many failed sign-ins."""

import pytest

from apps.pipelines.models import Pipeline

from .scenario import release_candidate

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def watch_violations(page) -> list[str]:
    violations = []
    page.on(
        "console",
        lambda message: "Content Security Policy" in message.text and violations.append(f"{page.url}: {message.text}"),
    )
    return violations


def sign_in(page, base: str, path: str, username: str, password: str, button: str) -> None:
    page.goto(f"{base}{path}")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name=button).click()
    page.wait_for_load_state()


def test_nothing_is_blocked_on_the_screens_the_admin_and_the_browsable_api(page, live_server, demo_files):
    base = live_server.url
    release_candidate()
    pipeline = Pipeline.objects.first()
    violations = watch_violations(page)

    sign_in(page, base, "/accounts/login/", "admin", "admin-pass", "Sign in")
    assert page.get_by_text("Signed in as admin").is_visible()
    # The site's own stylesheet applies ('self'): the header is laid out by style.css, not the browser default.
    assert page.evaluate("getComputedStyle(document.querySelector('header.top')).display") == "block"
    assert page.evaluate("document.styleSheets.length") >= 1
    for path in ["/", "/projects/", "/audit/", f"/pipelines/{pipeline.pk}/"]:
        page.goto(f"{base}{path}")
        page.wait_for_load_state()

    page.goto(f"{base}/admin/")
    page.wait_for_load_state()
    # The admin's scripts run ('self'): the navigation sidebar toggle is wired by nav_sidebar.js.
    page.goto(f"{base}/admin/auth/user/")
    page.wait_for_load_state()
    page.locator("#action-toggle").check()
    assert page.locator("input.action-select:checked").count() >= 1  # actions.js selected every row
    page.goto(f"{base}/admin/variables/variable/add/")
    page.wait_for_load_state()

    page.goto(f"{base}/api/v1/pipelines/")
    page.wait_for_load_state()
    assert page.evaluate("typeof window.jQuery") == "function"  # the browsable API's scripts loaded
    assert violations == []

    # The browsable API's sign-out works without script.
    page.get_by_role("button", name="Log out").click()
    page.wait_for_load_state()
    page.goto(f"{base}/")
    assert "/accounts/login/" in page.url
    assert violations == []


def test_the_lockout_page_after_too_many_failed_sign_ins(page, live_server, demo_files, settings):
    settings.AXES_FAILURE_LIMIT = 3
    release_candidate()
    base = live_server.url
    violations = watch_violations(page)
    for _ in range(3):
        sign_in(page, base, "/admin/login/", "admin", "wrong", "Log in")
    assert "Try again in 15 minutes." in page.get_by_test_id("locked-out").inner_text()
    sign_in(page, base, "/accounts/login/", "admin", "admin-pass", "Sign in")
    assert page.get_by_test_id("locked-out").is_visible()
    assert violations == []
