import pytest


@pytest.mark.django_db
def test_admin_login_page_renders_for_anonymous_visitors(client, org, stages):
    response = client.get("/admin/login/")
    assert response.status_code == 200
    assert b"Planasonix Environments" in response.content


@pytest.mark.django_db
def test_admin_index_redirects_anonymous_visitors_to_login(client):
    response = client.get("/admin/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
