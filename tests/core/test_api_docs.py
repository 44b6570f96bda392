"""The API docs are self-hosted (no CDN), tagged and described; the router root lists every resource."""

import re

import pytest
from django.contrib.staticfiles import finders
from drf_spectacular.generators import SchemaGenerator

from planasonix_env.api_docs import API_TAGS
from planasonix_env.api_router import router

pytestmark = pytest.mark.django_db

EXTERNAL = re.compile(r"""(?:src|href|url)\s*[=(]\s*["']?(?:https?:)?//""", re.IGNORECASE)


def _assets(html: str) -> list[str]:
    return re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)


@pytest.mark.parametrize("url", ["/api/docs/", "/api/redoc/"])
def test_docs_pages_reference_no_external_host(client, url):
    response = client.get(url)
    assert response.status_code == 200
    html = response.content.decode()
    assert not EXTERNAL.search(html), html
    assets = _assets(html)
    assert assets, "the page loads its assets"
    for asset in assets:
        assert asset.startswith("/"), asset
        if asset.startswith("/static/"):
            path = asset.removeprefix("/static/").split("?")[0]
            assert finders.find(path), f"{asset} is not an installed static file"


def test_swagger_start_up_script_is_served_as_a_file(client):
    html = client.get("/api/docs/").content.decode()
    assert "<script>" not in html  # no inline script: the start-up script comes from ?script=
    script = client.get("/api/docs/?script=")
    assert script.status_code == 200
    assert script["Content-Type"].startswith("application/javascript")
    assert "/api/v1/schema/" in script.content.decode()


def test_every_operation_is_tagged_with_a_documented_tag_and_described():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    documented = {tag["name"] for tag in schema["tags"]}
    assert documented == {tag["name"] for tag in API_TAGS}
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert operation.get("tags"), f"{method} {path} has no tag"
            assert set(operation["tags"]) <= documented, f"{method} {path}: {operation['tags']}"
            assert operation.get("description") or operation.get("summary"), f"{method} {path} is not described"


def test_router_root_lists_every_resource_once(client, django_user_model):
    user = django_user_model.objects.create_user("reader", "reader@example.com", "pw")
    client.force_login(user)
    response = client.get("/api/v1/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    listed = response.json()
    prefixes = {prefix for prefix, _, _ in router.registry}
    assert set(listed) == prefixes
    for name in ("projects", "pipelines", "deployments", "audit"):
        assert name in listed
