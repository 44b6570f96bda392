"""The API docs work with the network off: every request the page makes goes to the server itself,
and Swagger UI renders the operations (and ReDoc its sections)."""

from urllib.parse import urlparse

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _offline(page, base: str) -> list[str]:
    """Abort every request to another host (as with no network) and return what was attempted."""
    own = urlparse(base).netloc
    outside: list[str] = []

    def route(handle):
        url = handle.request.url
        if urlparse(url).netloc == own or url.startswith(("data:", "blob:")):
            handle.continue_()
        else:
            outside.append(url)
            handle.abort()

    page.route("**/*", route)
    return outside


def test_swagger_ui_renders_the_operations_offline(page, live_server):
    outside = _offline(page, live_server.url)
    page.goto(f"{live_server.url}/api/docs/")
    page.wait_for_selector(".opblock", timeout=30_000)
    for _ in range(60):  # Swagger UI renders the operations tag by tag: wait for them all, not the first
        if page.locator(".opblock").count() > 50:
            break
        page.wait_for_timeout(500)
    assert page.locator(".opblock").count() > 50
    assert page.get_by_text("/api/v1/promotions/", exact=False).first.is_visible()
    assert outside == []


def test_redoc_renders_offline(page, live_server):
    outside = _offline(page, live_server.url)
    page.goto(f"{live_server.url}/api/redoc/")
    page.wait_for_selector("[data-section-id]", timeout=30_000)
    assert page.locator("[data-section-id]").count() > 10
    assert outside == []
