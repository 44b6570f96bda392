"""Egress for webhook and Slack-style channels: an organization admin's channel cannot make the
server fetch loopback, metadata or the platform's own endpoints (refused when saved, 400 naming
`target`, nothing written) nor after a DNS change (checked again at send time, a final failure),
and a redirect to a refused address is never followed."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from apps.core import egress
from apps.core.errors import ValidationFailed
from apps.notifications import services
from apps.notifications.models import Channel, ChannelKind, Delivery, DeliveryStatus, Event

pytestmark = pytest.mark.django_db

CHANNELS = "/api/v1/notification-channels/"

REFUSED_TARGETS = [
    (ChannelKind.WEBHOOK, "http://127.0.0.1:8000/api/v1/"),
    (ChannelKind.WEBHOOK, "http://localhost/hook"),
    (ChannelKind.WEBHOOK, "http://[::1]:9000/hook"),
    (ChannelKind.WEBHOOK, "http://169.254.169.254/latest/meta-data/"),
    (ChannelKind.WEBHOOK, "http://[fd00:ec2::254]/latest/"),
    (ChannelKind.WEBHOOK, "http://0.0.0.0:8000/"),
    (ChannelKind.WEBHOOK, "http://2130706433/"),
    (ChannelKind.SLACK, "https://127.0.0.1/services/T0/B0/token"),
]


@pytest.mark.parametrize(("kind", "target"), REFUSED_TARGETS)
def test_an_org_admin_cannot_point_a_channel_at_the_host(api, org, org_admin, kind, target):
    before = Channel.objects.count()
    response = api(org_admin).post(
        CHANNELS, {"organization": "acme", "name": "ssrf", "kind": kind, "target": target}, format="json"
    )
    assert response.status_code == 400, response.content
    assert "target" in response.json()["error"]["fields"]
    assert Channel.objects.count() == before


def test_nor_change_an_existing_channel_to_it(api, org_admin, make_channel):
    channel, _ = make_channel(ChannelKind.WEBHOOK, "https://203.0.113.5/in")
    response = api(org_admin).patch(f"{CHANNELS}{channel.pk}/", {"target": "http://127.0.0.1:6379/"}, format="json")
    assert response.status_code == 400 and "target" in response.json()["error"]["fields"]
    channel.refresh_from_db()
    assert channel.target == "https://203.0.113.5/in"


def test_the_platform_endpoints_are_refused_even_when_allow_listed(make_channel, network_platform, dns):
    dns["broker.internal"] = ["10.20.0.6"]
    network_platform.EGRESS_ALLOW = ["10.0.0.0/8", "broker.internal"]
    for endpoint in egress.platform_endpoints():
        with pytest.raises(ValidationFailed) as exc:
            make_channel(ChannelKind.WEBHOOK, f"http://{endpoint.host}:{endpoint.port}/hook")
        assert "platform" in exc.value.fields["target"][0]
    assert not Channel.objects.exists()


def test_loopback_webhooks_only_through_the_operators_allow_list(make_channel, settings):
    with pytest.raises(ValidationFailed):
        make_channel(ChannelKind.WEBHOOK, "http://127.0.0.1:9/hook")
    settings.EGRESS_ALLOW = ["127.0.0.1/32"]
    channel, _ = make_channel(ChannelKind.WEBHOOK, "http://127.0.0.1:9/hook")
    assert channel.pk


def _pending(channel) -> Delivery:
    _, deliveries = services.emit(
        Event.RUN_FAILED, {"title": "t"}, organization=channel.organization, channels=[channel]
    )
    return deliveries[0]


@pytest.mark.parametrize("kind", [ChannelKind.WEBHOOK, ChannelKind.SLACK])
def test_a_dns_change_after_the_save_is_refused_at_send_time(make_channel, dns, monkeypatch, kind, settings):
    sent = []
    monkeypatch.setattr(services, "pinned_request", lambda *args, **kwargs: sent.append(args))
    dns["hooks.example.test"] = ["203.0.113.5"]
    channel, _ = make_channel(kind, "https://hooks.example.test/services/T0/B0/tok")
    dns["hooks.example.test"] = ["169.254.169.254"]
    delivery = _pending(channel)
    services.delivery_attempt(delivery.pk)
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED and "egress policy" in delivery.last_error
    assert "tok" not in delivery.last_error
    assert sent == []


class _Server:
    """A local HTTP server answering every POST with `status` (and a Location header)."""

    def __init__(self, status: int, location: str = ""):
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                server.requests.append(self.path)
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_a_redirect_is_never_followed(make_channel, settings):
    """The receiver (allow-listed by the operator) redirects to another local address: not followed."""
    inner = _Server(200)
    outer = _Server(307, location=f"{inner.url}/internal")
    try:
        settings.EGRESS_ALLOW = ["127.0.0.1/32"]
        channel, _ = make_channel(ChannelKind.WEBHOOK, f"{outer.url}/hook")
        delivery = _pending(channel)
        services.delivery_attempt(delivery.pk)
        delivery.refresh_from_db()
        assert outer.requests == ["/hook"] and inner.requests == []
        assert delivery.status == DeliveryStatus.FAILED and delivery.last_response_code == 307
    finally:
        inner.close()
        outer.close()


def test_a_delivery_connects_to_the_address_that_was_checked(make_channel, dns, settings):
    """The webhook's name resolves (for the policy) to an allow-listed address; the delivery goes
    there without looking the name up again (`.test` names never resolve in real DNS)."""
    receiver = _Server(200)
    try:
        port = receiver.httpd.server_address[1]
        settings.EGRESS_ALLOW = ["127.0.0.1/32"]
        dns["receiver.example.test"] = ["127.0.0.1"]
        channel, _ = make_channel(ChannelKind.WEBHOOK, f"http://receiver.example.test:{port}/hook")
        delivery = _pending(channel)
        services.delivery_attempt(delivery.pk)
        delivery.refresh_from_db()
        assert delivery.status == DeliveryStatus.SUCCEEDED, delivery.last_error
        assert receiver.requests == ["/hook"]
    finally:
        receiver.close()
