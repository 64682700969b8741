"""Fetching an image by http(s) URL without being turned against the server's own network.

The guard (``allow_private_hosts=False``, what the API uses) resolves the host once, refuses it
when any of its addresses is not a public unicast address (:func:`address_refusal`), and then
connects to exactly the address it checked: the request goes to the IP literal, with the
``Host`` header and the TLS server name (SNI and certificate check) of the real host name. The
HTTP client never resolves the name itself, so a DNS answer that changes between the check and
the connection (DNS rebinding) cannot reach loopback, private or metadata addresses. Every
redirect hop is checked and pinned the same way, on a connection of its own, and the peer the
socket really reached is compared with the pinned address before the body is read.

Without the guard (the CLI, whose user owns the machine) URLs are fetched as they are.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from typing import TYPE_CHECKING
from urllib.parse import urljoin

from tastegraph.errors import ImageRejected
from tastegraph.imaging.limits import ImageLimits, reject, too_large_bytes

if TYPE_CHECKING:
    import httpx

__all__ = ["IPAddress", "address_refusal", "fetch_url", "resolve_public"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_REDIRECTS = 5

# Ranges ``ipaddress`` calls global (or not reliably private on every Python) that still must
# not be fetched: the IETF protocol block (Oracle cloud metadata at 192.0.0.192), Azure's wire
# server (168.63.129.16, answers metadata queries from inside a VM), the 6to4 relay anycast,
# benchmarking and documentation ranges.
_EXTRA_BLOCKED = tuple(
    ipaddress.ip_network(n)
    for n in (
        "192.0.0.0/24",
        "168.63.129.16/32",
        "192.88.99.0/24",
        "198.18.0.0/15",
        "192.0.2.0/24",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "100.64.0.0/10",
        "64:ff9b:1::/48",  # local-use NAT64: translates to the operator's own IPv4 space
        "2001::/32",  # Teredo tunnels
        "2001:db8::/32",
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")

_HEADERS = {
    "User-Agent": "tastegraph (image fetcher)",
    "Accept": "image/*,*/*;q=0.5",
    # A compressed body would be inflated in memory before our byte cap sees it.
    "Accept-Encoding": "identity",
}


def address_refusal(address: IPAddress) -> str:
    """Why ``address`` must not be fetched from ("" when it is a public unicast address).

    IPv6 forms that carry an IPv4 address are judged by that address (NAT64, 6to4) or refused
    outright (IPv4-mapped and IPv4-compatible: some stacks connect them to the IPv4 host).
    """
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return "an IPv4-mapped IPv6 address"
        if address in _IPV4_COMPATIBLE:
            return "an IPv4-compatible IPv6 address"
        if address in _NAT64:
            inner = address_refusal(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
            return f"a NAT64 address of {inner}" if inner else ""
        if address.sixtofour is not None:
            inner = address_refusal(address.sixtofour)
            return f"a 6to4 address of {inner}" if inner else ""
        if address.is_site_local:
            return "a site-local address"
    checks = (
        (address.is_unspecified, "the unspecified address"),
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address (where cloud metadata services answer)"),
        (address.is_multicast, "a multicast address"),
        (address.is_private, "a private address"),
        (address.is_reserved, "a reserved address"),
        (any(address in net for net in _EXTRA_BLOCKED), "a special-purpose address"),
        (not address.is_global, "not a public address"),
    )
    for hit, why in checks:
        if hit:
            return why
    return ""


def _refused(url: str, host: str, address: IPAddress, why: str) -> ImageRejected:
    return reject(
        "unsupported_url",
        f"{host} resolves to {address}, {why}; it is not fetched.",
        "Give a URL on the public internet.",
        url,
    )


def _unreadable_url(url: str, why: str, **details: object) -> ImageRejected:
    return reject(
        "unreadable_url",
        f"Cannot fetch {url}: {why}.",
        "Check the URL opens in a browser and points at the image itself; retry later if the "
        "server is down.",
        url,
        **details,
    )


def _malformed(url: str, why: object) -> ImageRejected:
    return reject("unsupported_url", f"Malformed URL {url}: {why}.", "Fix the URL.", url)


def resolve_public(host: str, port: int, url: str) -> list[IPAddress]:
    """Every address ``host`` resolves to, in the resolver's order; refused unless all are
    public (one private answer among public ones is how a rebinding attack starts)."""
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        found = [literal]
    else:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise _unreadable_url(url, f"cannot resolve {host}") from exc
        found = []
        for info in infos:
            # A scope id ("fe80::1%eth0") is not part of the address; the address is refused.
            address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
            if address not in found:
                found.append(address)
    if not found:
        raise _unreadable_url(url, f"{host} has no address")
    for address in found:
        why = address_refusal(address)
        if why:
            raise _refused(url, host, address, why)
    return found


def _parse(url: str) -> httpx.URL:
    import httpx

    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        raise _malformed(url, exc) from exc
    if parsed.scheme not in ("http", "https") or not parsed.raw_host:
        raise reject(
            "unsupported_url",
            f"Only http(s) URLs with a host can be fetched, not {url}.",
            "Give an http(s) URL or a local file path.",
            url,
        )
    if parsed.userinfo:
        # Credentials would be sent to whatever the URL names and kept in the pin's source.
        raise reject(
            "unsupported_url",
            f"URLs with a user name or password are not fetched ({parsed.host}).",
            "Give a URL that needs no login, or download the image and ingest the file.",
            url,
        )
    return parsed


def fetch_url(url: str, limits: ImageLimits, timeout: float, allow_private_hosts: bool) -> bytes:
    """The body of ``url`` (following at most :data:`MAX_REDIRECTS` redirects), capped at
    ``limits.max_bytes`` and ``timeout`` seconds; see the module docstring for the guard."""
    import httpx

    deadline = time.monotonic() + timeout
    try:
        for _ in range(MAX_REDIRECTS + 1):
            target = _parse(url)
            if allow_private_hosts:
                pins: list[IPAddress | None] = [None]
            else:
                host = target.raw_host.decode("ascii")
                pins = list(resolve_public(host, target.port or _default_port(target), url))
            location = _fetch_one(url, target, pins, limits, timeout, deadline)
            if isinstance(location, bytes):
                return location
            url = urljoin(url, location)
        raise _unreadable_url(url, f"more than {MAX_REDIRECTS} redirects")
    except ImageRejected:
        raise
    except httpx.TimeoutException as exc:
        raise _unreadable_url(url, f"no answer within {timeout:g} s") from exc
    except httpx.InvalidURL as exc:
        raise _malformed(url, exc) from exc
    except (httpx.HTTPError, httpx.StreamError, OSError) as exc:
        raise _unreadable_url(url, str(exc) or type(exc).__name__) from exc


def _default_port(target: httpx.URL) -> int:
    return 443 if target.scheme == "https" else 80


def _fetch_one(
    url: str,
    target: httpx.URL,
    pins: list[IPAddress | None],
    limits: ImageLimits,
    timeout: float,
    deadline: float,
) -> bytes | str:
    """One hop: the body, or the redirect's Location. Tries the checked addresses in order
    (a host whose first address does not answer may answer on the next one)."""
    import httpx

    for i, pin in enumerate(pins):
        request_url, headers, extensions = target, dict(_HEADERS), {}
        if pin is not None:
            request_url = target.copy_with(host=str(pin))
            headers["Host"] = target.netloc.decode("ascii")
            # TLS: the server name sent and verified is the host's, not the IP literal's.
            extensions["sni_hostname"] = target.raw_host.decode("ascii")
        # A client per hop, without the environment's proxies: a pooled TLS connection verified
        # for one host must not carry another host's request, and a proxy would resolve the name
        # again itself.
        with httpx.Client(
            follow_redirects=False,
            timeout=timeout,
            headers=headers,
            trust_env=pin is None,
        ) as client:
            try:
                with client.stream("GET", request_url, extensions=extensions) as resp:
                    if pin is not None:
                        _check_peer(resp, pin, url)
                    if resp.is_redirect:
                        location = resp.headers.get("location", "")
                        if not location:
                            raise _unreadable_url(url, "redirect without a Location")
                        return str(location)
                    if resp.status_code >= 400:
                        raise _unreadable_url(
                            url,
                            f"the server answered HTTP {resp.status_code}",
                            status=resp.status_code,
                        )
                    return _read_body(resp, url, limits, deadline)
            except httpx.ConnectError:
                if i == len(pins) - 1:
                    raise
    raise AssertionError("unreachable: the last address re-raises")  # pragma: no cover


def _check_peer(resp: httpx.Response, pin: IPAddress, url: str) -> None:
    """The socket's peer is the address that was checked (else nothing is read from it)."""
    stream = resp.extensions.get("network_stream")
    peer = stream.get_extra_info("server_addr") if stream is not None else None
    if not peer:
        return  # a transport that does not say (only test doubles): the URL was pinned anyway
    reached = ipaddress.ip_address(str(peer[0]).split("%")[0])
    if reached != pin:
        raise _refused(url, str(pin), reached, "not the address that was checked")


def _read_body(resp: httpx.Response, url: str, limits: ImageLimits, deadline: float) -> bytes:
    declared = resp.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_bytes:
        raise too_large_bytes(int(declared), limits.max_bytes, url)
    buf = bytearray()
    # No chunk_size: a fixed size would buffer a slow body out of sight of the deadline below.
    for chunk in resp.iter_bytes():
        buf += chunk
        if len(buf) > limits.max_bytes:
            # Stop reading: the rest of a huge body is never downloaded.
            raise too_large_bytes(len(buf), limits.max_bytes, url, cut=True)
        if time.monotonic() > deadline:
            # Each read has its own timeout; this bounds a server that drips bytes forever.
            raise _unreadable_url(url, "the download took longer than the timeout")
    return bytes(buf)
