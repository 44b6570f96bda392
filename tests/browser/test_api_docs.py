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


def _documented_operations(page, base: str) -> set[str]:
    """Swagger UI's element id of every operation the served schema documents."""
    schema = page.request.get(f"{base}/api/v1/schema/?format=json").json()
    return {
        f"operations-{operation['tags'][0]}-{operation['operationId']}"
        for item in schema["paths"].values()
        for method, operation in item.items()
        if method in {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
    }


def _rendered_operations(page) -> set[str]:
    """Every operation Swagger UI renders, scrolling the page from top to bottom. From 150 tags and
    operations on, Swagger UI virtualizes the list (`operations-virtual`): only the rows near the
    viewport are in the DOM at a time, so counting `.opblock` once sees the first screenfuls only."""
    seen: set[str] = set()
    page.evaluate("window.scrollTo(0, 0)")
    for _ in range(400):
        page.wait_for_timeout(100)
        seen |= set(page.eval_on_selector_all(".opblock", "blocks => blocks.map(b => b.id)"))
        at_bottom = page.evaluate(
            "() => { const before = window.scrollY; window.scrollBy(0, window.innerHeight / 2);"
            " return window.scrollY === before; }"
        )
        if at_bottom:
            break
    return seen


def test_swagger_ui_renders_the_operations_offline(page, live_server):
    outside = _offline(page, live_server.url)
    page.goto(f"{live_server.url}/api/docs/")
    page.wait_for_selector(".opblock", timeout=30_000)
    documented = _documented_operations(page, live_server.url)
    assert len(documented) > 50

    rendered = _rendered_operations(page)

    assert rendered == documented, f"not rendered: {sorted(documented - rendered)[:10]}"
    page.evaluate("window.scrollTo(0, 0)")
    assert page.get_by_text("/api/v1/organizations/", exact=False).first.is_visible()
    assert outside == []


def test_redoc_renders_offline(page, live_server):
    outside = _offline(page, live_server.url)
    page.goto(f"{live_server.url}/api/redoc/")
    page.wait_for_selector("[data-section-id]", timeout=30_000)
    assert page.locator("[data-section-id]").count() > 10
    assert outside == []
