"""The promotion walk in a real browser: the developer requests, the requester sees no approve
button, approver1 and approver2 approve, the worker's step deploys, the page shows it deployed;
an outsider gets nothing."""

import re
import time

import pytest
from django.contrib.auth import get_user_model

from apps.approvals import services as approvals
from apps.approvals.models import PromotionRequest, PromotionState

from .scenario import release_candidate

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def sign_in(page, base: str, username: str, password: str) -> None:
    page.context.clear_cookies()
    page.goto(f"{base}/")
    assert "/accounts/login/" in page.url
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}/")
    assert page.get_by_text(f"Signed in as {username}").is_visible()


def test_promotion_walk(page, live_server, demo_files, save_screenshot):
    base = live_server.url
    demo = release_candidate()
    pipeline, v2, validation = demo["pipeline"], demo["v2"], demo["validation"]

    # The developer requests promotion of v2 from staging into production, attaching the validation run.
    sign_in(page, base, "dev", "dev-pass")
    page.goto(f"{base}/pipelines/{pipeline.pk}/")
    page.get_by_role("combobox", name="Version").select_option(str(v2.pk))
    page.get_by_role("combobox", name="From (source environment)").select_option(label="Staging")
    page.get_by_role("combobox", name="Into (target environment)").select_option(label="Production")
    page.get_by_role("textbox", name="Reason").fill(
        "Amounts rounded to cents; validated in staging against production."
    )
    page.get_by_role("textbox", name="Ticket").fill("OPS-42")
    page.get_by_label(re.compile(rf"run #{validation.pk}:")).check()
    page.get_by_role("button", name="Request promotion").click()
    page.wait_for_url(re.compile(r"/promotions/\d+/$"))
    promotion = PromotionRequest.objects.get(version=v2, target__slug="production")
    assert page.get_by_test_id("state").inner_text() == "Pending"
    assert page.get_by_text("0 of 2 approvals").is_visible()
    assert page.get_by_role("button", name="Approve").count() == 0  # not for the requester
    assert page.get_by_role("button", name="Cancel this request").is_visible()

    # approver1 finds it in the inbox and approves.
    sign_in(page, base, "approver1", "approver1-pass")
    assert page.get_by_test_id("nav-awaiting").inner_text() == "1"
    page.get_by_role("link", name=f"#{promotion.pk}").first.click()
    page.wait_for_url(f"{base}/promotions/{promotion.pk}/")
    page.get_by_label("Comment").fill("Metrics match the production baseline.")
    page.get_by_role("button", name="Approve").click()
    page.wait_for_url(f"{base}/promotions/{promotion.pk}/")
    assert page.get_by_text("1 of 2 approvals").is_visible()
    assert page.get_by_test_id("state").inner_text() == "Pending"

    # approver2 sees the request mid-promotion (the README's screenshots) and approves.
    sign_in(page, base, "approver2", "approver2-pass")
    save_screenshot(page, "inbox")
    page.goto(f"{base}/promotions/{promotion.pk}/")
    assert page.get_by_text("validation passed").is_visible()
    save_screenshot(page, "request-detail")
    page.get_by_role("button", name="Approve").click()
    page.wait_for_url(f"{base}/promotions/{promotion.pk}/")
    # Approved; the suite's real worker may already have started deploying it (the approval wakes it).
    assert page.get_by_test_id("state").inner_text() in ("Approved", "Deploying", "Deployed")

    # The worker's job (run here in the test's thread too: whoever locks the row first deploys it, once),
    # then the page shows the deployment.
    approvals.promotion_execute(promotion.pk)
    deadline = time.monotonic() + 60
    promotion.refresh_from_db()
    while promotion.state != PromotionState.DEPLOYED and time.monotonic() < deadline:
        time.sleep(0.1)
        promotion.refresh_from_db()
    page.reload()
    assert page.get_by_test_id("state").inner_text() == "Deployed"
    assert page.get_by_text("Deployed to Production").is_visible()
    page.goto(f"{base}/pipelines/{pipeline.pk}/")
    production_row = page.locator('tr[data-environment="production"]')
    assert "v2" in production_row.inner_text()

    # An outsider (no membership) sees nothing of it.
    get_user_model().objects.create_user("outsider", "outsider@example.com", "outsider-pass")
    sign_in(page, base, "outsider", "outsider-pass")
    assert page.get_by_test_id("nav-awaiting").inner_text() == "0"
    assert page.get_by_text(f"#{promotion.pk}").count() == 0
    for path in (
        f"/promotions/{promotion.pk}/",
        f"/pipelines/{pipeline.pk}/",
        f"/projects/{pipeline.project_id}/matrix/",
    ):
        response = page.goto(f"{base}{path}")
        assert response.status in (403, 404), path
    page.goto(f"{base}/audit/")
    assert page.get_by_text("No changes match.").is_visible()


def test_decision_form_is_keyboard_usable_and_errors_are_shown(page, live_server, demo_files):
    """Reject without a comment: the form error is shown next to the field (no 500), by keyboard only."""
    base = live_server.url
    demo = release_candidate()
    promotion, _ = approvals.promotion_request_create(
        actor=demo["users"]["dev"],
        pipeline=demo["pipeline"],
        version=demo["v2"],
        source=demo["stages"]["staging"],
        attached_runs=[demo["validation"]],
    )
    sign_in(page, base, "approver1", "approver1-pass")
    page.goto(f"{base}/promotions/{promotion.pk}/")
    page.get_by_role("button", name="Reject").focus()
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.get_by_text("Say why the request is rejected.").is_visible()
    assert page.get_by_test_id("state").inner_text() == "Pending"
    page.get_by_label("Comment").focus()
    page.keyboard.type("Not during the quarter close.")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")  # Approve, then Reject
    with page.expect_navigation(url=f"{base}/promotions/{promotion.pk}/"):
        page.keyboard.press("Enter")
    assert page.get_by_test_id("state").inner_text() == "Rejected"
