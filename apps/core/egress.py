"""The egress policy: which network targets tenant-configured connections may reach.

Bindings, connection tests, webhook channels and Git remotes are tenant input that makes the
server open connections, so each target is checked here, when it is saved and again right before
connecting (DNS can change in between). In order, for every address a host resolves to:

1. the platform's own endpoints (its database, broker, result backend, cache and SMTP server, from
   settings) are refused by host+port and by resolved address, whatever any allow-list says; a
   database binding naming another database on the platform's database server passes only
   through the operator's EGRESS_ALLOW;
2. an entry in the operator's EGRESS_DENY or the organization's deny-list refuses;
3. an entry in the operator's EGRESS_ALLOW allows;
4. an entry in the organization's allow-list allows, except loopback, link-local, metadata and
   unspecified addresses (the platform host's own services: only the operator opens those);
5. loopback, link-local, metadata and unspecified addresses are refused;
6. private ranges are allowed unless EGRESS_ALLOW_PRIVATE is off (a data platform's warehouses
   usually live on private networks);
7. anything else (public addresses) is allowed.

The organization's lists are read from `organization.egress_allow` / `egress_deny` (tenancy's
fields), so this module stays below tenancy. Hand-written: no maintained library decides
"platform endpoint or not", and `ipaddress` does the address arithmetic."""

import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError

from .errors import ValidationFailed

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_net = ipaddress.ip_network
METADATA = (_net("169.254.169.254/32"), _net("fd00:ec2::254/128"))
RESTRICTED: dict[str, tuple[Network, ...]] = {
    "a cloud metadata address": METADATA,
    "a loopback address": (_net("127.0.0.0/8"), _net("::1/128")),
    "a link-local address": (_net("169.254.0.0/16"), _net("fe80::/10")),
    "the unspecified address": (_net("0.0.0.0/8"), _net("::/128")),
    "a multicast address": (_net("224.0.0.0/4"), _net("ff00::/8")),
}
PRIVATE = (
    _net("10.0.0.0/8"),
    _net("172.16.0.0/12"),
    _net("192.168.0.0/16"),
    _net("100.64.0.0/10"),
    _net("fc00::/7"),
)
HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*$"
)
MAX_ENTRIES = 200
DEFAULT_PORTS = {"postgres": 5432, "mysql": 3306, "http": 80, "https": 443, "ssh": 22, "git": 9418}
DATABASE_ENGINE_PORTS = {"postgresql": 5432, "postgis": 5432, "mysql": 3306}
SERVICE_PORTS = {
    "redis": 6379,
    "rediss": 6379,
    "valkey": 6379,
    "amqp": 5672,
    "amqps": 5671,
    "memcache": 11211,
    "http": 80,
    "https": 443,
}


class EgressRefused(ValidationFailed):
    """A target the egress policy refuses (a 400 naming the field)."""

    code = "egress_refused"


# --- lists ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rules:
    networks: tuple[Network, ...] = ()
    hosts: tuple[str, ...] = ()  # exact names, or ".example.com" for every name below example.com

    def matches(self, host: str, address: Address | None) -> bool:
        name = host.lower().rstrip(".")
        if any(name == h or (h.startswith(".") and name.endswith(h)) for h in self.hosts):
            return True
        return address is not None and any(address in n for n in self.networks if n.version == address.version)


def parse_entries(value, *, organization_allow: bool = False) -> Rules:
    """Parse a list of networks (CIDR or single address) and host names (`*.example.com` for a
    whole domain). Raises Django's ValidationError with one message per bad entry."""
    if value in (None, ""):
        return Rules()
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ValidationError("Give a list of networks (10.0.0.0/8, 2001:db8::/32) or host names (*.example.com).")
    if len(value) > MAX_ENTRIES:
        raise ValidationError(f"At most {MAX_ENTRIES} entries.")
    networks, hosts, errors = [], [], []
    for raw in value:
        entry = raw.strip().lower()
        try:
            network = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            network = None
        if network is not None:
            if organization_allow and (kind := _restricted_kind_of_network(network)):
                errors.append(f"'{raw}' covers {kind}: only the operator (EGRESS_ALLOW) may allow those.")
            networks.append(network)
        elif HOSTNAME.fullmatch(entry.removeprefix("*.")) and not entry.replace(".", "").isdigit():
            hosts.append(entry[1:] if entry.startswith("*.") else entry)
        else:
            errors.append(f"'{raw[:100]}' is neither a network (CIDR) nor a host name.")
    if errors:
        raise ValidationError(errors)
    return Rules(tuple(networks), tuple(hosts))


def validate_organization_allow(value) -> None:
    """Model-field validator of an organization's allow-list."""
    parse_entries(value, organization_allow=True)


def validate_organization_deny(value) -> None:
    """Model-field validator of an organization's deny-list."""
    parse_entries(value)


def _restricted_kind_of_network(network: Network) -> str | None:
    for kind, ranges in RESTRICTED.items():
        if any(network.version == r.version and network.overlaps(r) for r in ranges):
            return kind
    return None


def _operator_rules(name: str) -> Rules:
    try:
        return parse_entries(list(getattr(settings, name, []) or []))
    except ValidationError as exc:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(f"{name}: {'; '.join(exc.messages)}") from exc


def _organization_rules(organization, attribute: str, *, organization_allow: bool = False) -> Rules:
    if organization is None:
        return Rules()
    try:
        return parse_entries(getattr(organization, attribute, None) or [], organization_allow=organization_allow)
    except ValidationError:
        return Rules()  # the field's validator refuses bad entries on save; never widen on a bad row


# --- addresses ----------------------------------------------------------------------------------


def normalize(address: Address) -> Address:
    """IPv4-mapped IPv6 (::ffff:127.0.0.1) is the IPv4 address it maps."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def category(address: Address) -> tuple[str, str | None]:
    """("restricted", what) / ("private", None) / ("public", None)."""
    address = normalize(address)
    for kind, ranges in RESTRICTED.items():
        if any(address in r for r in ranges if r.version == address.version):
            return "restricted", kind
    if any(address in r for r in PRIVATE if r.version == address.version):
        return "private", None
    return "public", None


def resolve_addresses(host: str, port: int) -> list[Address]:
    """Every address `host` resolves to (tests patch this to play a DNS change)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(normalize(ipaddress.ip_address(str(info[4][0]).split("%")[0])) for info in infos))


def _literal(host: str) -> Address | None:
    try:
        return normalize(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


# --- the platform's own endpoints --------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    label: str
    host: str
    port: int
    databases: frozenset[str] | None = None  # for a database server: the platform's database names


def _url_endpoints(label: str, url) -> list[Endpoint]:
    found = []
    for part in str(url or "").split(";"):
        parts = urlsplit(part.strip())
        scheme = parts.scheme.split("+")[0]
        try:
            port = parts.port
        except ValueError:
            port = None
        if parts.hostname and (port or scheme in SERVICE_PORTS):
            found.append(Endpoint(label, parts.hostname, port or SERVICE_PORTS[scheme]))
    return found


def platform_endpoints() -> list[Endpoint]:
    """The platform's own database servers, broker, result backend, cache, SMTP server and web
    address (SITE_URL, and the WEB_BIND the web processes listen on)."""
    found = []
    for alias, db in settings.DATABASES.items():
        engine = db.get("ENGINE", "").rsplit(".", 1)[-1]
        if engine not in DATABASE_ENGINE_PORTS:
            continue
        name = str(db.get("NAME") or "")
        test_name = (db.get("TEST") or {}).get("NAME") or f"test_{name}"
        found.append(
            Endpoint(
                f"database ({alias})",
                db.get("HOST") or "localhost",
                int(db.get("PORT") or DATABASE_ENGINE_PORTS[engine]),
                frozenset(filter(None, (name, test_name))),
            )
        )
    found += _url_endpoints("Celery broker", getattr(settings, "CELERY_BROKER_URL", ""))
    found += _url_endpoints("Celery result backend", getattr(settings, "CELERY_RESULT_BACKEND", ""))
    for alias, cache in settings.CACHES.items():
        locations = cache.get("LOCATION") or []
        for location in [locations] if isinstance(locations, str) else locations:
            if "://" in location:
                found += _url_endpoints(f"cache ({alias})", location)
            elif re.fullmatch(r"[\w.-]+:\d{1,5}", location):
                host, port = location.rsplit(":", 1)
                found.append(Endpoint(f"cache ({alias})", host, int(port)))
    if getattr(settings, "EMAIL_BACKEND", "").endswith("smtp.EmailBackend") and settings.EMAIL_HOST:
        found.append(Endpoint("SMTP server", settings.EMAIL_HOST, int(settings.EMAIL_PORT or 25)))
    found += _url_endpoints("web address (SITE_URL)", getattr(settings, "SITE_URL", ""))
    found += _bind_endpoints(getattr(settings, "WEB_BIND", ""))
    return found


WILDCARD_BINDS = {"0.0.0.0", "::", ""}  # noqa: S104 - read from settings, never bound here


def _bind_endpoints(value: str) -> list[Endpoint]:
    """gunicorn bind addresses ("host:port", "[::1]:8000", "unix:/path"): a wildcard listens on
    every local address, so loopback (by name and address) stands for it."""
    found = []
    for bind in str(value or "").replace(",", " ").split():
        if bind.startswith(("unix:", "fd://")) or ":" not in bind:
            continue
        host, port = bind.rsplit(":", 1)
        host = host.strip("[]")
        if not port.isdigit():
            continue
        hosts = ["127.0.0.1", "::1", "localhost"] if host in WILDCARD_BINDS else [host]
        found += [Endpoint("web server (WEB_BIND)", name, int(port)) for name in hosts]
    return found


def _endpoint_addresses(endpoint: Endpoint) -> set[Address]:
    literal = _literal(endpoint.host)
    if literal is not None:
        return {literal}
    try:
        return set(resolve_addresses(endpoint.host, endpoint.port))
    except (OSError, UnicodeError):
        return set()


# --- the check ----------------------------------------------------------------------------------


def _refuse(field: str, message: str) -> EgressRefused:
    return EgressRefused(f"{field}: {message}", fields={field: [message]})


def _check_host_syntax(host, field: str) -> str:
    if not isinstance(host, str) or not host.strip():
        raise _refuse(field, "Give a host name or address.")
    host = host.strip()
    literal = _literal(host)
    if literal is None and not HOSTNAME.fullmatch(host.lower().rstrip(".")):
        # Refuses Unix socket paths ("/var/run/postgresql"), libpq host lists ("a,b") and the like.
        raise _refuse(field, f"'{host[:100]}' is not a host name or IP address.")
    return host


def check_target(
    kind: str,
    host,
    port: int | None,
    *,
    organization,
    field: str,
    database: str | None = None,
    connect: bool = False,
    dns: bool = True,
) -> list[Address]:
    """Refuse (EgressRefused, naming `field`) a target the policy does not allow; return the
    addresses that were checked, so a caller can connect to exactly those.

    `connect=False` (saving): a name that does not resolve from here is accepted on its name (the
    worker may see other DNS), and checked again when connecting. `connect=True`: it must resolve,
    and every address it resolves to must pass. `dns=False` (resolving configuration, which must stay
    cheap): names are judged by name only, addresses still by address."""
    host = _check_host_syntax(host, field)
    port = int(port or DEFAULT_PORTS.get(kind, 0))
    literal = _literal(host)
    if literal is not None:
        addresses = [literal]
    elif not dns and not connect:
        addresses = []
    else:
        try:
            addresses = resolve_addresses(host, port)
        except (OSError, UnicodeError) as exc:
            if connect:
                raise _refuse(field, f"'{host}' does not resolve.") from exc
            addresses = []
    operator_allow, operator_deny = _operator_rules("EGRESS_ALLOW"), _operator_rules("EGRESS_DENY")
    org_allow = _organization_rules(organization, "egress_allow", organization_allow=True)
    org_deny = _organization_rules(organization, "egress_deny")
    # Without addresses (names judged by name only) each rule is asked about the host alone.
    candidates: list[Address | None] = [*addresses] if addresses else [None]
    for endpoint in platform_endpoints():
        if endpoint.port != port:
            continue
        same_name = endpoint.host.lower() == host.lower()
        if not same_name and not (addresses and set(addresses) & _endpoint_addresses(endpoint)):
            continue
        # Without a database name (HTTP, webhooks, Git) the database server's port is the platform's database.
        if endpoint.databases is None or database is None or database in endpoint.databases:
            raise _refuse(field, f"{host}:{port} is the platform's own {endpoint.label}: never a valid target.")
        if not any(operator_allow.matches(host, a) for a in candidates):
            raise _refuse(
                field,
                f"{host}:{port} is the platform's database server: other databases on it only through the "
                "operator's EGRESS_ALLOW.",
            )
    for address in candidates:
        if operator_deny.matches(host, address) or org_deny.matches(host, address):
            raise _refuse(field, f"{host} is on the deny-list.")
        if address is None or operator_allow.matches(host, address):
            continue
        what, restricted = category(address)
        if org_allow.matches(host, address) and what != "restricted":
            continue
        if what == "restricted":
            raise _refuse(field, f"{host} is {restricted} ({address}): refused unless the operator allow-lists it.")
        if what == "private" and not getattr(settings, "EGRESS_ALLOW_PRIVATE", True):
            raise _refuse(field, f"{host} is a private address ({address}): refused unless allow-listed.")
    return addresses


def check_url(
    url,
    *,
    organization,
    field: str,
    schemes: tuple[str, ...] = ("https", "http", "ssh", "git"),
    connect: bool = False,
    dns: bool = True,
) -> list[Address]:
    """check_target for a URL: http(s), ssh://, git:// and scp-like `user@host:path` (Git remotes).
    Local paths, file:// and transport helpers (`ext::`) are refused."""
    if not isinstance(url, str) or not url.strip():
        raise _refuse(field, "Give a URL.")
    url = url.strip()
    if url.startswith("-"):
        raise _refuse(field, "A URL cannot start with '-'.")
    if re.match(r"[A-Za-z][\w+.-]*::", url):  # Git's transport helpers, e.g. ext::<command>
        raise _refuse(field, "Transport helpers (<name>::<address>) are not allowed.")
    scp = re.fullmatch(r"(?:[\w.+-]+@)?(\[[0-9a-fA-F:.]+\]|[^/:@\[\]]+):(?!//)(.*)", url)
    if "://" not in url and scp and "ssh" in schemes:
        host = scp.group(1).strip("[]")
        return check_target("ssh", host, 22, organization=organization, field=field, connect=connect, dns=dns)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in schemes:
        raise _refuse(field, f"Use one of these URL schemes: {', '.join(schemes)}.")
    try:
        port = parts.port
    except ValueError:
        raise _refuse(field, "The URL's port is not valid.") from None
    if not parts.hostname:
        raise _refuse(field, "The URL has no host.")
    port = port or DEFAULT_PORTS[scheme]
    return check_target(scheme, parts.hostname, port, organization=organization, field=field, connect=connect, dns=dns)
