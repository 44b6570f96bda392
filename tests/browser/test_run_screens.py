"""The run and schedule dialogs and the run page in a real browser, with a real Celery worker: dev
runs *Orders daily* in development with a parameter and watches the run page reach *succeeded*
with its metrics; a schedule is created in staging and shows its next fire times; a standard-edition
member sees no environment selector and the product page's explanation; the run dialog works with
the keyboard alone. Nothing is blocked by the strict Content-Security-Policy."""

import re

import pytest

from apps.demo.services import seed_demo
from apps.runs.models import Run, RunStatus, Schedule

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

EXPLANATION = (
    "If you do not see environment selectors in run or schedule dialogs, your organization may be on an "
    "edition that uses projects alone for separation."
)


def sign_in(page, base: str, username: str, password: str) -> list[str]:
    violations: list[str] = []
    page.on("console", lambda m: "Content Security Policy" in m.text and violations.append(m.text))
    page.context.clear_cookies()
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}/")
    return violations


def test_dev_runs_orders_daily_from_the_dialog_and_watches_it_succeed(
    page, live_server, demo_files, celery_worker_thread, save_screenshot
):
    base = live_server.url
    pipeline = seed_demo()["pipeline"]
    violations = sign_in(page, base, "dev", "dev-pass")
    page.goto(f"{base}/pipelines/{pipeline.pk}/")
    dialog = page.get_by_role("dialog", name="Run Orders daily")
    assert not dialog.is_visible()
    page.get_by_role("button", name="Run…").click()
    assert dialog.is_visible()
    environment = dialog.get_by_role("combobox", name="Environment")
    assert environment.evaluate("e => e.options[e.selectedIndex].text") == "Development"  # the project's default
    dialog.get_by_label("batch_size (integer)").fill("250")
    save_screenshot(page, "run-dialog")
    dialog.get_by_role("button", name="Start run").click()
    page.wait_for_url(re.compile(r"/runs/\d+/$"))
    run = Run.objects.get()
    assert run.parameters == {"batch_size": 250} and run.environment.slug == "development"

    # The page polls the status and reloads itself when the worker has finished the run.
    page.wait_for_selector('[data-testid="run-status"]:text("succeeded")', timeout=30_000)
    page.wait_for_selector('[data-finished="true"]')
    assert page.get_by_test_id("started-by").inner_text() == "started by hand by dev"
    metrics = page.get_by_test_id("metrics")
    assert metrics.get_by_role("rowheader").first.inner_text().startswith("orders_out")
    assert "200" in metrics.inner_text()  # the development warehouse's 200 orders
    assert " DEBUG " in page.get_by_test_id("run-log").inner_text()  # development logs verbosely
    assert page.get_by_test_id("parameters").inner_text().split() == ["batch_size", "250"]
    save_screenshot(page, "run-page")
    assert Run.objects.get().status == RunStatus.SUCCEEDED
    assert violations == []


def test_a_schedule_created_in_staging_shows_its_next_fire_times(page, live_server, demo_files):
    base = live_server.url
    pipeline = seed_demo()["pipeline"]

    # dev may view staging but not edit its schedules: the service's refusal is on the form, nothing saved.
    sign_in(page, base, "dev", "dev-pass")
    page.goto(f"{base}/pipelines/{pipeline.pk}/")
    page.get_by_role("button", name="Schedule…").click()
    dialog = page.get_by_role("dialog", name="Schedule Orders daily")
    dialog.get_by_role("combobox", name="Environment").select_option(label="Staging")
    dialog.get_by_role("textbox", name="Cron").fill("15 7 * * 1-5")
    dialog.get_by_role("button", name="Save schedule").click()
    page.wait_for_load_state()
    assert "manage_schedules" in page.get_by_role("dialog").get_by_role("alert").inner_text()
    assert not Schedule.objects.filter(environment__slug="staging").exists()

    violations = sign_in(page, base, "admin", "admin-pass")
    page.goto(f"{base}/pipelines/{pipeline.pk}/")
    page.get_by_role("button", name="Schedule…").click()
    dialog = page.get_by_role("dialog", name="Schedule Orders daily")
    dialog.get_by_role("combobox", name="Environment").select_option(label="Staging")
    dialog.get_by_role("textbox", name="Cron").fill("15 7 * * 1-5")
    dialog.get_by_role("textbox", name="Time zone").fill("Europe/Paris")
    preview = dialog.locator("[data-schedule-next] time")
    preview.nth(4).wait_for()  # the live preview: five fire times in the schedule's zone
    assert all(" 07:15 " in t and t.endswith(("CET", "CEST")) for t in preview.all_inner_texts())
    dialog.get_by_role("button", name="Save schedule").click()
    page.wait_for_url(re.compile(rf"/pipelines/{pipeline.pk}/"))
    row = page.get_by_test_id("schedules").locator('tr[data-environment="staging"]')
    times = row.locator("ol.fire-times time").all_inner_texts()
    assert len(times) == 5 and all(re.match(r"(Mon|Tue|Wed|Thu|Fri) \d{4}-\d\d-\d\d 07:15 CES?T$", t) for t in times)
    assert "off" in row.inner_text()  # staging has no deployment yet: the schedule waits for one
    assert Schedule.objects.get(environment__slug="staging").timezone == "Europe/Paris"
    assert violations == []


def test_a_standard_edition_member_sees_no_selector_and_the_explanation(page, live_server, demo_files):
    from django.contrib.auth import get_user_model

    from apps.pipelines import services as pipeline_services
    from apps.tenancy import services as tenancy_services
    from apps.tenancy.models import Edition, Role

    base = live_server.url
    demo = seed_demo()
    admin = demo["users"]["admin"]
    organization = tenancy_services.organization_create(
        actor=admin, name="Corner shop", slug="corner", edition=Edition.STANDARD, owner=admin
    )
    member = get_user_model().objects.create_user("shopkeeper", password="shop-pass")
    tenancy_services.membership_add(actor=admin, organization=organization, user=member, role=Role.MEMBER)
    project = pipeline_services.project_create(actor=admin, organization=organization, name="Shop")
    pipeline = pipeline_services.pipeline_create(actor=admin, project=project, name="Till rolls")

    sign_in(page, base, "shopkeeper", "shop-pass")
    page.goto(f"{base}/pipelines/{pipeline.pk}/")
    page.get_by_role("button", name="Run…").click()
    dialog = page.get_by_role("dialog", name="Run Till rolls")
    assert dialog.get_by_role("combobox", name="Environment").count() == 0
    assert EXPLANATION in dialog.get_by_test_id("no-environments").inner_text()
    dialog.get_by_role("button", name="Close").click()
    page.get_by_role("button", name="Schedule…").click()
    schedule = page.get_by_role("dialog", name="Schedule Till rolls")
    assert schedule.get_by_role("combobox", name="Environment").count() == 0
    assert EXPLANATION in schedule.get_by_test_id("no-environments").inner_text()


def test_the_run_dialog_works_with_the_keyboard_alone(page, live_server, demo_files, celery_worker_thread):
    base = live_server.url
    pipeline = seed_demo()["pipeline"]
    sign_in(page, base, "dev", "dev-pass")
    page.goto(f"{base}/pipelines/{pipeline.pk}/")

    def focused() -> str:
        return page.evaluate("document.activeElement.textContent.trim() || document.activeElement.name || ''")

    for _ in range(40):  # Tab through the page to the Run button
        page.keyboard.press("Tab")
        if focused() == "Run…":
            break
    assert focused() == "Run…"
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="Run Orders daily")
    assert dialog.is_visible()
    assert page.evaluate("document.activeElement.closest('dialog') !== null")  # focus moved into the dialog
    page.keyboard.press("Escape")
    assert not dialog.is_visible() and focused() == "Run…"  # Escape closes it, focus goes back

    page.keyboard.press("Enter")
    for _ in range(10):
        if focused() == "param_batch_size":
            break
        page.keyboard.press("Tab")
    assert focused() == "param_batch_size"
    page.keyboard.type("99")
    for _ in range(10):
        page.keyboard.press("Tab")
        if focused() == "Start run":
            break
    assert focused() == "Start run"
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/runs/\d+/$"))
    assert Run.objects.get().parameters == {"batch_size": 99}
    page.wait_for_selector('[data-testid="run-status"]:text("succeeded")', timeout=30_000)
