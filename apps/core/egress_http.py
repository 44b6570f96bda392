"""HTTP requests pinned to the address the egress policy checked (apps/core/egress.py).

`check_url(..., connect=True)` resolves the host and judges every address; a plain `requests.post`
would then resolve the name again, and a DNS answer that changed in between (DNS rebinding: a
public address for the check, 127.0.0.1 for the connection) would reach what the policy refused.
Here the socket connects to the checked address itself, while the URL's host name stays in the
Host header, the TLS SNI and the certificate check. Proxies from the environment are not used (a
proxy would make its own lookup). Webhooks, Slack-style channels and HTTP connection tests send
through `pinned_request`."""

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool


class _PinnedConnection:
    """Opens the socket to `pinned_address` instead of a fresh lookup of the host name."""

    pinned_address = ""
    _dns_host: str  # urllib3's HTTPConnection attribute (this mixin always comes first in its bases)

    def _new_conn(self):
        name = self._dns_host
        self._dns_host = self.pinned_address
        try:
            return super()._new_conn()  # type: ignore[misc]  # HTTPConnection's, after this mixin in the MRO
        finally:
            self._dns_host = name  # the name again: Host header, SNI and certificate check use it


class PinnedAdapter(HTTPAdapter):
    def __init__(self, address):
        self._address = str(address)
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        pinned = {"pinned_address": self._address}
        http = type("PinnedHTTPConnection", (_PinnedConnection, HTTPConnection), pinned)
        https = type("PinnedHTTPSConnection", (_PinnedConnection, HTTPSConnection), pinned)
        self.poolmanager.pool_classes_by_scheme = {
            "http": type("PinnedHTTPConnectionPool", (HTTPConnectionPool,), {"ConnectionCls": http}),
            "https": type("PinnedHTTPSConnectionPool", (HTTPSConnectionPool,), {"ConnectionCls": https}),
        }


def pinned_request(method: str, url: str, *, addresses, **kwargs) -> requests.Response:
    """`requests.request(method, url, **kwargs)` connected to `addresses[0]`, the first address
    `check_url`/`check_target` returned for this URL's host. Redirects are never followed."""
    if not addresses:
        raise ValueError("pinned_request needs the addresses the egress check returned.")
    with requests.Session() as session:
        session.trust_env = False
        adapter = PinnedAdapter(addresses[0])
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        return session.request(method, url, allow_redirects=False, **kwargs)
