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


def _scrolled_through(page) -> dict[str, set[str]]:
    """Every tag, operation and path Swagger UI renders while the page is scrolled from top to bottom.

    Swagger UI virtualizes the operations list once it holds 150 rows or more (tags plus operations,
    `B.length>=150` in swagger-ui-bundle.js): only the rows near the viewport are in the DOM, so the
    operations are collected as they scroll into view instead of counted at one scroll position."""
    seen: dict[str, set[str]] = {"tags": set(), "operations": set(), "paths": set()}
    for _ in range(2000):
        found = page.evaluate(
            """() => ({
                tags: [...document.querySelectorAll('.opblock-tag')].map(e => e.dataset.tag),
                operations: [...document.querySelectorAll('.opblock')].map(e => e.id),
                paths: [...document.querySelectorAll('.opblock-summary-path')].map(e => e.dataset.path),
                bottom: window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 2,
            })"""
        )
        for name in seen:
            seen[name].update(found[name])
        if found["bottom"]:
            break
        page.evaluate("window.scrollBy(0, window.innerHeight / 2)")
        page.wait_for_timeout(50)
    return seen


def test_swagger_ui_renders_the_operations_offline(page, live_server):
    from drf_spectacular.generators import SchemaGenerator

    from planasonix_env.api_docs import API_TAGS

    schema = SchemaGenerator().get_schema(request=None, public=True)
    operations = {
        operation["operationId"]
        for methods in schema["paths"].values()
        for method, operation in methods.items()
        if method in ("get", "post", "put", "patch", "delete")
    }
    outside = _offline(page, live_server.url)
    page.goto(f"{live_server.url}/api/docs/")
    page.wait_for_selector(".opblock", timeout=30_000)
    seen = _scrolled_through(page)
    assert "Could not render" not in page.content()  # Swagger UI's error boundary
    assert seen["tags"] == {tag["name"] for tag in API_TAGS}
    assert {op_id.rsplit("-", 1)[-1] for op_id in seen["operations"]} >= operations
    assert "/api/v1/promotions/" in seen["paths"] and "/api/v1/personal-overrides/" in seen["paths"]
    assert "/api/v1/triggers/" in seen["paths"]
    assert outside == []


def test_redoc_renders_offline(page, live_server):
    outside = _offline(page, live_server.url)
    page.goto(f"{live_server.url}/api/redoc/")
    page.wait_for_selector("[data-section-id]", timeout=30_000)
    assert page.locator("[data-section-id]").count() > 10
    assert outside == []
