"""Headless Chromium (Debian's /usr/bin/chromium, driven by Playwright for Python) against
pytest-django's live_server. A failing test leaves a screenshot in a temporary folder (its path is
printed); with SAVE_SCREENSHOTS=1 the walk also writes the README's screenshots. Without Chromium
the tests skip, except with REQUIRE_BROWSER=1 (set by .ci/run), where they fail."""

import os
import shutil
from pathlib import Path

import pytest
from django.db import connections

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "docs" / "screenshots"


def chromium_missing() -> bool:
    return not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture
def demo_files(settings, tmp_path):
    """The demo's SQLite 'warehouses' live in a temporary folder that sqlite bindings may use."""
    settings.VAR_DIR = tmp_path
    settings.SQLITE_CONNECTION_ROOT = str(tmp_path)
    return tmp_path


@pytest.fixture(scope="module")
def browser():
    """One Chromium per test module (each test gets its own context: cookies, storage and pages
    are not shared): a launch per test was a fixed cost of every browser test."""
    if chromium_missing():
        reason = f"Chromium is not installed at {CHROMIUM} (apt-get install -y chromium)"
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(reason + "; REQUIRE_BROWSER=1 (CI) does not let browser tests skip")
        pytest.skip(reason)
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (requirements/dev.txt)")
    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls are still
    # synchronous code, so Django's async-safety check must not refuse them.
    with pytest.MonkeyPatch.context() as patch, sync_api.sync_playwright() as playwright:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-background-networking"], headless=True
        )
        try:
            yield chromium
        finally:
            # While Playwright's event loop runs in this thread, Django keeps this thread's database
            # connections in context-local storage (asgiref), apart from the ones made before: close
            # them now, or PostgreSQL refuses to drop the test database for a session left open.
            connections.close_all()
            chromium.close()


@pytest.fixture
def page(browser, request, tmp_path_factory):
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    context.set_default_timeout(15_000)
    tab = context.new_page()
    yield tab
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        path = tmp_path_factory.mktemp("browser-failures") / f"{request.node.name}.png"
        tab.screenshot(path=str(path), full_page=True)
        print(f"\nscreenshot of the failing page: {path}")
    context.close()


@pytest.fixture
def save_screenshot():
    """save_screenshot(page, name): writes docs/screenshots/<name>.png when SAVE_SCREENSHOTS=1."""

    def save(tab, name: str) -> None:
        if os.environ.get("SAVE_SCREENSHOTS") == "1":
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            tab.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)

    return save
