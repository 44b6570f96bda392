"""HTTP egress connects to the address the egress policy checked (apps/core/egress_http.py): the
host name a request names is never looked up again, so a DNS answer that changes between the check
and the connection (DNS rebinding) cannot redirect it."""

import ipaddress
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from apps.core.egress_http import pinned_request


@pytest.fixture
def server():
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append((self.path, self.headers["Host"]))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.seen = seen
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def test_the_request_goes_to_the_checked_address_with_the_name_as_host(server):
    port = server.server_address[1]
    # `.invalid` never resolves (RFC 2606): only the pinned address can have been used.
    url = f"http://checked-name.invalid:{port}/hook"
    response = pinned_request("GET", url, addresses=[ipaddress.ip_address("127.0.0.1")], timeout=5)
    assert response.status_code == 204
    assert server.seen == [("/hook", f"checked-name.invalid:{port}")]
    with pytest.raises(requests.ConnectionError):  # unpinned, the same name goes nowhere
        requests.get(url, timeout=5)


def test_without_checked_addresses_nothing_is_sent(server):
    with pytest.raises(ValueError, match="addresses"):
        pinned_request("GET", f"http://127.0.0.1:{server.server_address[1]}/", addresses=[], timeout=5)
    assert server.seen == []


def test_environment_proxies_are_not_used(server, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # a proxy would make its own lookup
    response = pinned_request(
        "GET", f"http://pinned.invalid:{server.server_address[1]}/", addresses=["127.0.0.1"], timeout=5
    )
    assert response.status_code == 204
